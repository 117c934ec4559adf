//! What bottle prints: aligned tables, JSON for scripts, progress lines on a terminal.

use std::io::{IsTerminal, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use bottle_core::launch::Observer;
use bottle_core::state::Step;
use bottle_core::Slug;
use serde::Serialize;

/// Prints `value` as pretty JSON on stdout.
pub fn json(value: &impl Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Rows under a header, each column as wide as its widest cell.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Self {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            padded.join("  ").trim_end().to_owned() + "\n"
        };
        let mut text = line(self.header.clone());
        for row in &self.rows {
            text.push_str(&line(row.iter().map(String::as_str).collect()));
        }
        text
    }

    pub fn print(&self) {
        print!("{}", self.render());
    }
}

/// "3m", "2h", "5d": how long ago `then` (seconds since the epoch) was.
pub fn age(then: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let secs = (now - then).max(0);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Progress lines on stderr, one per launch step and undo, when stderr is a terminal.
pub struct Progress {
    enabled: bool,
}

impl Progress {
    pub fn on_terminal() -> Self {
        Progress {
            enabled: std::io::stderr().is_terminal(),
        }
    }
}

impl Observer for Progress {
    fn step(&self, slug: &Slug, step: Step) {
        if self.enabled {
            eprintln!(
                "[{}/{}] {slug}: {}",
                step.number(),
                Step::ALL.len(),
                step.describe()
            );
        }
    }

    fn undo(&self, slug: &Slug, what: &str) {
        if self.enabled {
            eprintln!("      {slug}: {what}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_trim_trailing_space() {
        let mut t = Table::new(&["SLUG", "ALIAS", "STATE"]);
        t.row(vec!["a".into(), "127.0.0.16".into(), "running".into()]);
        t.row(vec!["longer-name".into(), "127.0.0.17".into(), "".into()]);
        assert_eq!(
            t.render(),
            "SLUG         ALIAS       STATE\n\
             a            127.0.0.16  running\n\
             longer-name  127.0.0.17\n"
        );
    }
}

//! A scripted [`Host`] for unit tests: it answers each command with the next prepared
//! output and records what it was asked to run.

use std::collections::VecDeque;
use std::sync::Mutex;

use bottle_core::BackendError;

use crate::command::{CommandOutput, Host, HostCommand};

pub(crate) struct FakeHost {
    terminal: bool,
    replies: Mutex<VecDeque<CommandOutput>>,
    ran: Mutex<Vec<HostCommand>>,
}

impl FakeHost {
    pub(crate) fn new(terminal: bool, replies: impl IntoIterator<Item = CommandOutput>) -> Self {
        FakeHost {
            terminal,
            replies: Mutex::new(replies.into_iter().collect()),
            ran: Mutex::new(Vec::new()),
        }
    }

    /// Every command run so far, in order.
    pub(crate) fn ran(&self) -> Vec<HostCommand> {
        self.ran.lock().unwrap().clone()
    }
}

impl Host for FakeHost {
    fn run(&self, command: &HostCommand) -> Result<CommandOutput, BackendError> {
        self.ran.lock().unwrap().push(command.clone());
        let reply = self.replies.lock().unwrap().pop_front();
        Ok(reply.unwrap_or_else(|| panic!("no reply prepared for `{command}`")))
    }

    fn stdin_is_terminal(&self) -> bool {
        self.terminal
    }
}

pub(crate) fn success(stdout: &str) -> CommandOutput {
    CommandOutput {
        status: Some(0),
        stdout: stdout.to_owned(),
        stderr: String::new(),
    }
}

pub(crate) fn failure(status: i32, stderr: &str) -> CommandOutput {
    CommandOutput {
        status: Some(status),
        stdout: String::new(),
        stderr: stderr.to_owned(),
    }
}

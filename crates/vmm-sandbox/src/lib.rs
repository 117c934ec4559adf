//! bottle's VMM backend for Linux hosts without a usable microVM: the agent runs in new user,
//! network, mount, PID, IPC and UTS namespaces, and reaches its bundle's services only
//! through a relay.
//!
//! # How it works
//!
//! [`SandboxBackend`] (the plugin side) never forks. `create` writes a machine directory
//! (`STATE_DIR/machines/NAME/machine.json`); `start`, `exec` and `probe` run the
//! `bottle-sandbox` helper, a binary of this crate. `bottle-sandbox start` leaves a
//! supervisor running, detached in a session of its own, one per machine:
//!
//! 1. The supervisor stays in the host's namespaces. It forks the sandbox's first process,
//!    which moves into new user, network, PID, IPC and UTS namespaces, and writes that
//!    process's id maps: in this *outer* user namespace, root is the user who runs bottle.
//! 2. The first process forks the init, pid 1 of the new PID namespace. The init brings `lo`
//!    up; binds one listening socket per endpoint, to exactly the endpoint's `ALIAS:HOSTPORT`,
//!    inside the new network namespace, and hands them to the supervisor (`SCM_RIGHTS`);
//!    builds a new root and pivots into it; then creates the agent's *inner* user and mount
//!    namespaces, nested in the outer ones, and starts the agent's command (or, when there is
//!    none, waits, reaping orphans, for `exec` to run commands).
//! 3. The supervisor accepts on those sockets and forwards each connection to the same
//!    `ALIAS:HOSTPORT` in the host's network namespace. It records its own pid and the init's
//!    (with their start times, so that a reused pid is never mistaken for them) and reports
//!    ready. On SIGTERM it has the init take every process down, and kills the init (and so
//!    the whole PID namespace) if it does not within a few seconds.
//!
//! The agent sees the same address as on the host (`BOTTLE_SERVICE_WEB=127.0.0.17:49154`
//! works unchanged), and the same programs: the new root is a small tmpfs holding read-only
//! views of the host's `/usr`, `/etc` and library directories (`/bin`, `/lib`, ... as links or
//! views, as the host has them), a fresh `/proc` for the new PID namespace, a `/dev` with
//! only `null`, `zero`, `full`, `random`, `urandom` and `tty`, empty `/tmp`, `/run` and
//! `/dev/shm`, and the spec's mounts (the bottle's own directory at `/run/bottle` among
//! them). Its environment is its spec's, plus `PATH` and `HOME` when the spec sets none.
//!
//! # Why the agent reaches its bundle and nothing else
//!
//! - **Network.** The agent's network namespace is new: it holds only `lo` and no route
//!   anywhere else. Host loopback (`127.0.0.1` and every other alias, whatever listens
//!   there), the LAN and the internet have no path from it: a connection to anything but the
//!   relay's own addresses is refused or unreachable. The relay listens on exactly the
//!   bundle's endpoints and forwards each connection to the same address; it never reads
//!   what it copies, so the agent cannot steer it. `create` refuses a policy wider than
//!   `ALIAS/32` and any endpoint outside the policy or off loopback; `effective_policy`
//!   reports the relay's addresses, as `/32`s, read back from the machine's record, which is
//!   also what the helper relays to.
//! - **No way out of the network namespace.** That namespace belongs to the outer user
//!   namespace, and the agent lives in the inner one, so it holds no capability over it (no
//!   new interfaces, addresses or routes) and none in the host's (no `setns` out, no
//!   interface moved in). Abstract Unix sockets belong to a network namespace, so the host's
//!   are out of reach as well.
//! - **Unix sockets and other host files.** The agent's root is the new tmpfs: the host's
//!   `/tmp`, `/run`, `/var/run` (the Docker socket, `/run/postgresql`, `/tmp/.X11-unix`) and
//!   home directories are simply not in it. The system views are read-only, and because the
//!   outer namespace made them, the kernel locks them for the inner one: the agent can
//!   neither remount them writable nor unmount them. Sources are opened before the root
//!   changes and bound through `/proc/self/fd`, mount points are made without following
//!   symbolic links, and the host's root is detached before the agent starts; no descriptor
//!   of the host's file tree stays open (every helper process closes all but its standard
//!   streams before it executes anything).
//! - **Processes and IPC.** The PID namespace shows only the sandbox's processes, so the agent
//!   can neither signal nor ptrace anything of the host; the IPC namespace hides the host's
//!   System V and POSIX IPC objects; the agent gets a session keyring of its own.
//! - **Root.** When bottle runs as root, the outer namespace maps its uid 0 to the host's root
//!   (so that building can reach root's state directory and the spec's mounts) and its uid 1
//!   to `nobody` (65534), and the init switches to uid 1, dropping every supplementary group,
//!   before it creates the agent's namespace. The agent's root is therefore the host's
//!   `nobody`: it cannot read `/etc/shadow`, write a root-owned file, or use root's
//!   capabilities on anything, and the locked read-only views cannot be remounted. For any
//!   other user, the agent runs as that user, with that user's permissions.
//! - **Fail closed.** `probe` has the helper build (and take down) a real sandbox before it
//!   answers [`ScopeSupport::Exact`](bottle_core::ScopeSupport::Exact); a missing helper, a
//!   helper of another version, or any step that fails makes the scope unenforceable, with
//!   the reason.
//!
//! # Limits
//!
//! - The wall is the Linux kernel: a kernel bug reachable from a user namespace (there is no
//!   seccomp filter) can break it. A microVM (`vmm = "smolvm"`) is a stronger boundary.
//! - The agent sees the host's `/usr`, `/etc` and libraries, read-only, with the read
//!   permissions of its host uid: whatever that user (or `nobody`) may read there, it may
//!   read. It writes the spec's writable mounts as that uid.
//! - Programs installed outside those directories (`/opt`, `/nix`, `~/.local`, pyenv's
//!   shims) are not there unless the spec mounts them; the agent's `PATH` is its spec's, or
//!   the usual system one.
//! - Nothing limits the agent's CPU, memory or number of processes: `cpus` and `memory_mib`
//!   are accepted and ignored (with a warning), and a runaway agent can load the host.
//! - The init runs as the agent's own user in the agent's namespaces, and stays ptraceable so
//!   that an unprivileged user's `exec` can join it; the agent could therefore take it over.
//!   It holds nothing of the host by then (its standard streams are the sandbox's
//!   `/dev/null`; it keeps a signal fd and a socket the supervisor never reads), and the
//!   supervisor can always kill it, and with it the PID namespace, from outside.
//! - The agent can read its init's command line, which names the machine directory.
//! - The host must allow user namespaces (for bottle run as an unprivileged user, unprivileged
//!   ones), show a full `/proc` (not so in a default Docker container, which masks parts of
//!   it), and run Linux 5.8 or later (5.12 or later when a shared directory has mounts below
//!   it). `probe` finds out.
//! - A command run by `exec` has no controlling terminal (so that it cannot push input into
//!   the user's terminal); the helper passes SIGINT, SIGTERM, SIGHUP and SIGQUIT on to it.

mod backend;
mod command;
mod error;
mod host;
mod machine;
mod process;
mod settings;
mod validate;

pub use backend::{SandboxBackend, VERSION};

// Shared with the `bottle-sandbox` helper, which reads the same machine directories.
pub use command::{HELPER_FAILURE, HELPER_MESSAGE_PREFIX};
pub use host::ROOT_AGENT_ID;
pub use machine::{MachineDir, MachineRecord, SupervisorRecord};
pub use process::ProcessId;
pub use validate::{relay_targets, HOST_ROOT_DIR};

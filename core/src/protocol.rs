//! What the host (Node) and a job's supervisor say to each other.
//!
//! Each job has a control socket (a `SOCK_STREAM` pair: the host keeps one end, the
//! supervisor gets the other). Messages are frames: a little-endian `u32` length,
//! then that many bytes: a kind byte and its payload. The host sends [`Launch`]
//! first, then at most [`ToSupervisor::Terminate`]; closing its end (or dying) means
//! "end the job now". The supervisor answers [`FromSupervisor::Spawned`] (or
//! [`FromSupervisor::SpawnFailed`]), [`FromSupervisor::Exited`] when the job's main
//! process has exited, and [`FromSupervisor::Done`] once every process of the job is
//! gone, then exits.
//!
//! Both ends are ours and built from the same source, so decoding is strict: any
//! malformed frame is an error, never a guess. The fork server checks the version
//! in its hello ([`Hello`]) so that a binary from another build is refused.

use std::time::Duration;

/// Bumped whenever a message changes.
pub const VERSION: u32 = 1;

/// Largest frame accepted: a job's arguments and environment are bounded by the
/// kernel's `ARG_MAX` (a quarter of the stack limit), far below this.
pub const MAX_FRAME: usize = 256 << 20;

/// What the fork server sends once, when it is ready (or why it cannot serve):
/// magic, version, its pid, and the errno of the requirement it could not meet (0:
/// none; see the supervisor crate: a subreaper is required).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub version: u32,
    pub pid: i32,
    pub refused: i32,
}

const HELLO_MAGIC: [u8; 4] = *b"LWFS";

impl Hello {
    pub const LEN: usize = 16;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0; Self::LEN];
        out[..4].copy_from_slice(&HELLO_MAGIC);
        out[4..8].copy_from_slice(&self.version.to_le_bytes());
        out[8..12].copy_from_slice(&self.pid.to_le_bytes());
        out[12..].copy_from_slice(&self.refused.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Hello> {
        if bytes.len() != Self::LEN || bytes[..4] != HELLO_MAGIC {
            return None;
        }
        Some(Hello {
            version: u32::from_le_bytes(bytes[4..8].try_into().ok()?),
            pid: i32::from_le_bytes(bytes[8..12].try_into().ok()?),
            refused: i32::from_le_bytes(bytes[12..].try_into().ok()?),
        })
    }
}

/// The job to start: everything resolved by the host, so the supervisor only executes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// A path (never searched in `PATH`), relative ones from the working directory.
    pub program: Vec<u8>,
    /// `argv[0]` first: the command as the job gave it.
    pub argv: Vec<Vec<u8>>,
    /// `KEY=VALUE` entries: the job's whole environment.
    pub envp: Vec<Vec<u8>>,
    /// Absolute; `None`: the host's working directory (passed as a descriptor).
    pub cwd: Option<Vec<u8>>,
    /// When the main process exits, terminate whatever it left behind.
    pub kill_leftovers: bool,
    /// Between SIGTERM and SIGKILL, whenever the job's processes are terminated.
    pub grace: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToSupervisor {
    Launch(Launch),
    /// Terminate every process of the job: SIGTERM, `grace`, SIGKILL.
    Terminate {
        grace: Duration,
    },
}

/// The kernel's accounting for every process of the job the supervisor reaped.
pub use crate::reap::ResourceUsage as Usage;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromSupervisor {
    /// The main process runs: its pid, and the supervisor's.
    Spawned { pid: i32, supervisor: i32 },
    /// The main process could not be started.
    SpawnFailed { errno: i32 },
    /// The main process exited: its raw wait status.
    Exited { wait_status: i32 },
    /// No process of the job is left (`complete`), or the supervisor gave up
    /// waiting for some after SIGKILL; `usage` covers every process it reaped.
    Done { usage: Usage, complete: bool },
}

const LAUNCH: u8 = 1;
const TERMINATE: u8 = 2;
const SPAWNED: u8 = 10;
const SPAWN_FAILED: u8 = 11;
const EXITED: u8 = 12;
const DONE: u8 = 13;

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "local-worker protocol error: {}", self.0)
    }
}

impl std::error::Error for ProtocolError {}

impl ToSupervisor {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Writer::frame(match self {
            ToSupervisor::Launch(_) => LAUNCH,
            ToSupervisor::Terminate { .. } => TERMINATE,
        });
        match self {
            ToSupervisor::Launch(launch) => {
                out.bytes(&launch.program);
                out.list(&launch.argv);
                out.list(&launch.envp);
                out.u8(u8::from(launch.cwd.is_some()));
                out.bytes(launch.cwd.as_deref().unwrap_or_default());
                out.u8(u8::from(launch.kill_leftovers));
                out.duration(launch.grace);
            }
            ToSupervisor::Terminate { grace } => out.duration(*grace),
        }
        out.finish()
    }

    fn decode(kind: u8, payload: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader(payload);
        let message = match kind {
            LAUNCH => {
                let program = r.bytes()?;
                let argv = r.list()?;
                let envp = r.list()?;
                let has_cwd = r.flag()?;
                let cwd = r.bytes()?;
                ToSupervisor::Launch(Launch {
                    program,
                    argv,
                    envp,
                    cwd: has_cwd.then_some(cwd),
                    kill_leftovers: r.flag()?,
                    grace: r.duration()?,
                })
            }
            TERMINATE => ToSupervisor::Terminate {
                grace: r.duration()?,
            },
            other => return Err(ProtocolError(format!("unknown message kind {other}"))),
        };
        r.end()?;
        Ok(message)
    }
}

impl FromSupervisor {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Writer::frame(match self {
            FromSupervisor::Spawned { .. } => SPAWNED,
            FromSupervisor::SpawnFailed { .. } => SPAWN_FAILED,
            FromSupervisor::Exited { .. } => EXITED,
            FromSupervisor::Done { .. } => DONE,
        });
        match self {
            FromSupervisor::Spawned { pid, supervisor } => {
                out.i32(*pid);
                out.i32(*supervisor);
            }
            FromSupervisor::SpawnFailed { errno } => out.i32(*errno),
            FromSupervisor::Exited { wait_status } => out.i32(*wait_status),
            FromSupervisor::Done { usage, complete } => {
                out.u64(usage.max_rss_kb);
                out.duration(usage.user_cpu);
                out.duration(usage.system_cpu);
                out.u8(u8::from(*complete));
            }
        }
        out.finish()
    }

    fn decode(kind: u8, payload: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader(payload);
        let message = match kind {
            SPAWNED => FromSupervisor::Spawned {
                pid: r.i32()?,
                supervisor: r.i32()?,
            },
            SPAWN_FAILED => FromSupervisor::SpawnFailed { errno: r.i32()? },
            EXITED => FromSupervisor::Exited {
                wait_status: r.i32()?,
            },
            DONE => FromSupervisor::Done {
                usage: Usage {
                    max_rss_kb: r.u64()?,
                    user_cpu: r.duration()?,
                    system_cpu: r.duration()?,
                },
                complete: r.flag()?,
            },
            other => return Err(ProtocolError(format!("unknown message kind {other}"))),
        };
        r.end()?;
        Ok(message)
    }
}

/// Messages a [`Frames`] buffer can decode.
pub trait Message: Sized {
    fn decode_frame(kind: u8, payload: &[u8]) -> Result<Self, ProtocolError>;
}

impl Message for ToSupervisor {
    fn decode_frame(kind: u8, payload: &[u8]) -> Result<Self, ProtocolError> {
        ToSupervisor::decode(kind, payload)
    }
}

impl Message for FromSupervisor {
    fn decode_frame(kind: u8, payload: &[u8]) -> Result<Self, ProtocolError> {
        FromSupervisor::decode(kind, payload)
    }
}

/// Bytes received so far on a stream, cut into messages as they complete.
#[derive(Debug, Default)]
pub struct Frames {
    buf: Vec<u8>,
}

impl Frames {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// One `read(2)` from `fd` straight into the buffer (no copy through a stack
    /// buffer, whose pages a fresh fork would have to fault in); 0 at end of stream.
    pub fn read_from(&mut self, fd: std::os::fd::BorrowedFd) -> std::io::Result<usize> {
        const READ: usize = 16 * 1024;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&fd);
        loop {
            match crate::capture::read_into(fd, &mut self.buf, READ) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                done => return done,
            }
        }
    }

    /// The next complete message, `Ok(None)` if more bytes are needed.
    pub fn next_message<M: Message>(&mut self) -> Result<Option<M>, ProtocolError> {
        let Some(header) = self.buf.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_le_bytes(header.try_into().expect("4 bytes")) as usize;
        if len == 0 || len > MAX_FRAME {
            return Err(ProtocolError(format!("frame of {len} bytes")));
        }
        let Some(frame) = self.buf.get(4..4 + len) else {
            return Ok(None);
        };
        let message = M::decode_frame(frame[0], &frame[1..]);
        self.buf.drain(..4 + len);
        message.map(Some)
    }

    /// Forgets what is held, keeping the buffer.
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// Whether bytes of an unfinished frame are held.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn frame(kind: u8) -> Writer {
        Writer(vec![0, 0, 0, 0, kind])
    }

    fn finish(mut self) -> Vec<u8> {
        let len = u32::try_from(self.0.len() - 4).expect("frames stay far below 4 GiB");
        self.0[..4].copy_from_slice(&len.to_le_bytes());
        self.0
    }

    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn duration(&mut self, d: Duration) {
        self.u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    fn bytes(&mut self, b: &[u8]) {
        self.0
            .extend_from_slice(&u32::try_from(b.len()).expect("small").to_le_bytes());
        self.0.extend_from_slice(b);
    }

    fn list(&mut self, items: &[Vec<u8>]) {
        self.0
            .extend_from_slice(&u32::try_from(items.len()).expect("small").to_le_bytes());
        for item in items {
            self.bytes(item);
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], ProtocolError> {
        if self.0.len() < n {
            return Err(ProtocolError("truncated message".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take(1)?[0])
    }

    fn flag(&mut self) -> Result<bool, ProtocolError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(ProtocolError(format!("flag {other}"))),
        }
    }

    fn u32(&mut self) -> Result<u32, ProtocolError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }

    fn i32(&mut self) -> Result<i32, ProtocolError> {
        Ok(i32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }

    fn u64(&mut self) -> Result<u64, ProtocolError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }

    fn duration(&mut self) -> Result<Duration, ProtocolError> {
        Ok(Duration::from_micros(self.u64()?))
    }

    fn bytes(&mut self) -> Result<Vec<u8>, ProtocolError> {
        let len = self.u32()? as usize;
        Ok(self.take(len)?.to_vec())
    }

    fn list(&mut self) -> Result<Vec<Vec<u8>>, ProtocolError> {
        let count = self.u32()? as usize;
        // Each item takes at least its 4-byte length: a count beyond that is a lie.
        if count > self.0.len() / 4 {
            return Err(ProtocolError(format!("list of {count} items")));
        }
        (0..count).map(|_| self.bytes()).collect()
    }

    fn end(&self) -> Result<(), ProtocolError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError(format!("{} bytes too many", self.0.len())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch() -> Launch {
        Launch {
            program: b"/usr/bin/env".to_vec(),
            argv: vec![b"env".to_vec(), Vec::new(), "é漢".as_bytes().to_vec()],
            envp: vec![b"A=1".to_vec(), b"PATH=/bin".to_vec()],
            cwd: Some(b"/tmp".to_vec()),
            kill_leftovers: true,
            grace: Duration::from_millis(1500),
        }
    }

    fn roundtrip<M: Message + std::fmt::Debug + PartialEq>(encoded: Vec<u8>, expected: M) {
        // Fed one byte at a time: a message appears only once complete.
        let mut frames = Frames::default();
        for (i, byte) in encoded.iter().enumerate() {
            assert_eq!(frames.next_message::<M>(), Ok(None), "early at byte {i}");
            frames.push(&[*byte]);
        }
        assert_eq!(frames.next_message::<M>(), Ok(Some(expected)));
        assert!(frames.is_empty());
    }

    #[test]
    fn every_message_survives_the_wire() {
        let with_cwd = ToSupervisor::Launch(launch());
        roundtrip(with_cwd.encode(), with_cwd);
        let without = ToSupervisor::Launch(Launch {
            cwd: None,
            kill_leftovers: false,
            ..launch()
        });
        roundtrip(without.encode(), without);
        let terminate = ToSupervisor::Terminate {
            grace: Duration::from_micros(7),
        };
        roundtrip(terminate.encode(), terminate);
        for message in [
            FromSupervisor::Spawned {
                pid: 42,
                supervisor: 41,
            },
            FromSupervisor::SpawnFailed {
                errno: libc::ENOEXEC,
            },
            FromSupervisor::Exited {
                wait_status: 0x0900,
            },
            FromSupervisor::Done {
                usage: Usage {
                    max_rss_kb: 123_456,
                    user_cpu: Duration::from_micros(1_500_001),
                    system_cpu: Duration::from_micros(3),
                },
                complete: true,
            },
        ] {
            roundtrip(message.encode(), message);
        }
    }

    #[test]
    fn several_messages_in_one_read_come_out_in_order() {
        let mut frames = Frames::default();
        let a = FromSupervisor::Exited { wait_status: 0 };
        let b = FromSupervisor::Done {
            usage: Usage::default(),
            complete: false,
        };
        frames.push(&[a.encode(), b.encode()].concat());
        assert_eq!(frames.next_message(), Ok(Some(a)));
        assert_eq!(frames.next_message(), Ok(Some(b)));
        assert_eq!(frames.next_message::<FromSupervisor>(), Ok(None));
    }

    #[test]
    fn malformed_frames_are_errors_not_guesses() {
        let bad = |bytes: &[u8]| {
            let mut frames = Frames::default();
            frames.push(bytes);
            frames.next_message::<ToSupervisor>()
        };
        assert!(bad(&[0, 0, 0, 0]).is_err(), "empty frame");
        assert!(bad(&[1, 0, 0, 0, 99]).is_err(), "unknown kind");
        assert!(bad(&[0xff, 0xff, 0xff, 0x7f]).is_err(), "huge frame");
        // A Terminate with a byte too many, and one truncated.
        assert!(bad(&[10, 0, 0, 0, TERMINATE, 0, 0, 0, 0, 0, 0, 0, 0, 1]).is_err());
        assert!(bad(&[5, 0, 0, 0, TERMINATE, 0, 0, 0, 0]).is_err());
        // A list claiming more items than its bytes could hold.
        let mut launch = ToSupervisor::Launch(launch()).encode();
        launch[4 + 1 + 4 + 12..4 + 1 + 4 + 12 + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(bad(&launch).is_err());
    }

    #[test]
    fn hello_is_checked() {
        let hello = Hello {
            version: VERSION,
            pid: 77,
            refused: libc::EINVAL,
        };
        assert_eq!(Hello::decode(&hello.encode()), Some(hello));
        assert_eq!(Hello::decode(b"LWFSxxxxxxxxxxxx"[..12].as_ref()), None);
        assert_eq!(Hello::decode(&[0; Hello::LEN]), None);
    }
}

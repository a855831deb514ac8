//! A small client of the Docker Engine API over a unix socket: what the `berth` CLI uses
//! to talk to berthd (and what tests use to talk to it raw).
//!
//! One request per connection (`Connection: close`), bodies by Content-Length or
//! chunked, replies read as a whole, as a stream, or — after `101 Switching Protocols`
//! — as the hijacked connection itself (attach, exec start).
//!
//! ```no_run
//! let c = berth_client::Client::new("/run/berth/berth.sock");
//! let v = c.get_json("/version")?;
//! println!("{}", v["Version"]);
//! # Ok::<(), berth_client::Error>(())
//! ```

use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// The API version berth's client speaks.
pub const API_VERSION: &str = "1.45";

/// The data root berth uses when none is given.
pub const DEFAULT_DATA_ROOT: &str = "/var/lib/berth";

/// The daemon socket for `data_root` when no `--host`/`BERTH_HOST` says otherwise:
/// `/run/berth/berth.sock` for the default data root, `<data_root>/berthd.sock` for any
/// other, so that one daemon serves each data root and a CLI given `--data-root` talks
/// to that root's daemon.
pub fn default_socket(data_root: &Path) -> PathBuf {
    if data_root == Path::new(DEFAULT_DATA_ROOT) {
        PathBuf::from("/run/berth/berth.sock")
    } else {
        data_root.join("berthd.sock")
    }
}

/// What can go wrong talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// nothing listens on the socket
    #[error("cannot connect to the berth daemon at unix://{socket}: {source}. Is berthd running? (berth starts it on demand when it can)")]
    Connect {
        /// the socket
        socket: String,
        /// why
        source: std::io::Error,
    },
    /// the daemon answered with an error status; `message` is docker's `{"message"}`
    #[error("Error response from daemon: {message}")]
    Api {
        /// HTTP status
        status: u16,
        /// the daemon's message
        message: String,
    },
    /// the connection broke or the reply is not HTTP
    #[error("talking to the berth daemon: {0}")]
    Io(#[from] std::io::Error),
    /// the reply body is not the JSON we expected
    #[error("the berth daemon sent invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// A client for one daemon socket.
#[derive(Clone, Debug)]
pub struct Client {
    socket: PathBuf,
    /// how long [`Client::request_with_fd`] waits for `100 Continue`
    continue_wait: std::time::Duration,
}

/// A request body.
pub enum Body<'a> {
    /// none
    Empty,
    /// JSON
    Json(&'a Value),
    /// bytes with a content type
    Bytes(&'a [u8], &'a str),
    /// a stream sent chunked (tar uploads of any size), with a content type
    Stream(&'a mut dyn Read, &'a str),
}

impl Client {
    /// A client of the daemon listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client {
            socket: socket.into(),
            continue_wait: CONTINUE_WAIT,
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Whether a daemon answers `/_ping`.
    pub fn ping(&self) -> bool {
        self.request("GET", "/_ping", Body::Empty)
            .is_ok_and(|r| r.status == 200)
    }

    fn connect(&self) -> Result<UnixStream> {
        UnixStream::connect(&self.socket).map_err(|source| Error::Connect {
            socket: self.socket.display().to_string(),
            source,
        })
    }

    /// Send one request; `path` includes the query (`/containers/json?all=1`) and is
    /// sent under `/v1.45`. Any status comes back: see [`Response::ok`].
    pub fn request(&self, method: &str, path: &str, body: Body) -> Result<Response> {
        self.request_with(method, path, body, &[])
    }

    /// [`Client::request`] with extra headers (e.g. `X-Registry-Auth`, `Upgrade`).
    pub fn request_with(
        &self,
        method: &str,
        path: &str,
        body: Body,
        headers: &[(&str, &str)],
    ) -> Result<Response> {
        let mut s = self.connect()?;
        let head = request_head(method, path, headers);
        match send(&mut s, head, body) {
            Ok(()) => {}
            // a daemon may answer (an error) and hang up before it read the whole body,
            // as dockerd does: its answer is the reply
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                return Response::read(s).map_err(|_| Error::Io(e));
            }
            Err(e) => return Err(e.into()),
        }
        Response::read(s)
    }

    /// berth's own: a request whose body goes with a descriptor (SCM_RIGHTS), e.g. a
    /// build context directory the daemon reads in place. The request says
    /// `Expect: 100-continue`; after the daemon's `100 Continue` the body is sent with
    /// `fd` attached to its first byte (a daemon that reads the body as plain bytes
    /// would drop the descriptor). Any other first answer is the reply.
    pub fn request_with_fd(
        &self,
        method: &str,
        path: &str,
        body: (&[u8], &str),
        headers: &[(&str, &str)],
        fd: std::os::fd::BorrowedFd<'_>,
    ) -> Result<Response> {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
        use std::os::fd::AsRawFd;
        let (bytes, ct) = body;
        if bytes.is_empty() {
            return Err(bad("a request that passes a descriptor needs a body".into()));
        }
        let mut s = self.connect()?;
        let mut head = request_head(method, path, headers);
        head.push_str(&format!(
            "Expect: 100-continue\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
            bytes.len()
        ));
        s.write_all(head.as_bytes())?;
        // a daemon that predates descriptor passing ignores the Expect and waits for
        // the body, which would wait for its answer forever
        if !readable_within(&s, self.continue_wait)? {
            return Err(bad(format!(
                "the daemon at unix://{} did not answer `Expect: 100-continue` in {} s: it \
                 is probably older than this berth; stop it (`kill $(cat <data-root>/berthd.pid)`, \
                 data root /var/lib/berth by default) and the next berth command starts this \
                 version's",
                self.socket.display(),
                self.continue_wait.as_secs()
            )));
        }
        let first = Response::read(s.try_clone()?)?;
        if first.status != 100 {
            return Ok(first);
        }
        if !first.conn.buffer().is_empty() {
            return Err(bad("the daemon answered before the request body".into()));
        }
        let fds = [fd.as_raw_fd()];
        let sent = loop {
            match sendmsg::<()>(
                s.as_raw_fd(),
                &[std::io::IoSlice::new(bytes)],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(Error::Io(e.into())),
                Ok(n) => break n,
            }
        };
        s.write_all(&bytes[sent..])?;
        s.flush()?;
        Response::read(s)
    }

    /// GET and parse a JSON reply; an error status becomes [`Error::Api`].
    pub fn get_json(&self, path: &str) -> Result<Value> {
        self.request("GET", path, Body::Empty)?.ok()?.json()
    }

    /// POST a JSON body (or none) and parse the JSON reply (`null` when empty).
    pub fn post_json(&self, path: &str, body: Option<&Value>) -> Result<Value> {
        let b = body.map_or(Body::Empty, Body::Json);
        self.request("POST", path, b)?.ok()?.json()
    }

    /// POST with no body, expecting no reply body (204/304).
    pub fn post(&self, path: &str) -> Result<()> {
        self.request("POST", path, Body::Empty)?.ok()?;
        Ok(())
    }

    /// DELETE and parse the JSON reply (`null` when empty).
    pub fn delete(&self, path: &str) -> Result<Value> {
        self.request("DELETE", path, Body::Empty)?.ok()?.json()
    }
}

/// A reply: status, headers, and the body still on the connection.
pub struct Response {
    /// HTTP status
    pub status: u16,
    /// headers, names lowercased
    pub headers: HashMap<String, String>,
    conn: BufReader<UnixStream>,
}

impl Response {
    fn read(s: UnixStream) -> Result<Response> {
        let mut conn = BufReader::new(s);
        let mut line = String::new();
        conn.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("not an HTTP reply: {:?}", line.trim())))?;
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if conn.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        Ok(Response {
            status,
            headers,
            conn,
        })
    }

    /// This reply if its status is 1xx/2xx/3xx, else [`Error::Api`] with the daemon's
    /// message.
    pub fn ok(self) -> Result<Response> {
        if self.status < 400 {
            return Ok(self);
        }
        let status = self.status;
        let body = self.bytes()?;
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
        Err(Error::Api { status, message })
    }

    /// The body as a reader (Content-Length, chunked, or until the daemon closes).
    pub fn reader(self) -> BodyReader<BufReader<UnixStream>> {
        let chunked = self
            .headers
            .get("transfer-encoding")
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
        let length = self
            .headers
            .get("content-length")
            .and_then(|l| l.parse().ok());
        BodyReader::new(self.conn, chunked, length)
    }

    /// The whole body.
    pub fn bytes(self) -> Result<Vec<u8>> {
        let mut b = Vec::new();
        self.reader().read_to_end(&mut b)?;
        Ok(b)
    }

    /// The body as JSON; an empty body is `null`.
    pub fn json(self) -> Result<Value> {
        let b = self.bytes()?;
        if b.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&b)?)
    }

    /// Another handle on the connection, e.g. to `shutdown(Write)` it and tell the
    /// daemon to stop a streamed operation (a build on Ctrl-C) while reading its end.
    pub fn stream_handle(&self) -> Result<UnixStream> {
        Ok(self.conn.get_ref().try_clone()?)
    }

    /// After `101 UPGRADED`: the raw connection (with whatever the daemon already sent
    /// buffered in front of it) for attach and exec streams.
    pub fn upgraded(self) -> Result<(BufReader<UnixStream>, UnixStream)> {
        let w = self.conn.get_ref().try_clone()?;
        Ok((self.conn, w))
    }
}

fn bad(m: String) -> Error {
    Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, m))
}

/// An HTTP/1.1 message body as a reader: chunked (until the last chunk), a
/// Content-Length, or — with neither — until the peer closes. The same decoder serves
/// the daemon's side (request bodies) and ours (replies).
pub struct BodyReader<R: BufRead> {
    conn: R,
    chunked: bool,
    /// bytes left in this chunk / the body; None: until EOF
    left: Option<u64>,
    done: bool,
}

impl<R: BufRead> BodyReader<R> {
    /// The body that follows the headers just read from `conn`.
    pub fn new(conn: R, chunked: bool, length: Option<u64>) -> Self {
        BodyReader {
            conn,
            chunked,
            left: if chunked { Some(0) } else { length },
            done: !chunked && length == Some(0),
        }
    }
}

impl<R: BufRead> Read for BodyReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.chunked && self.left == Some(0) {
            let mut size = String::new();
            self.conn.read_line(&mut size)?;
            let n = u64::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16).map_err(
                |_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("bad chunk size {:?}", size.trim()),
                    )
                },
            )?;
            if n == 0 {
                // the empty line after the last chunk (no trailers)
                let mut crlf = String::new();
                self.conn.read_line(&mut crlf)?;
                self.done = true;
                return Ok(0);
            }
            self.left = Some(n);
        }
        let want = match self.left {
            Some(0) => {
                self.done = true;
                return Ok(0);
            }
            Some(l) => buf.len().min(usize::try_from(l).unwrap_or(usize::MAX)),
            None => buf.len(),
        };
        let got = self.conn.read(&mut buf[..want])?;
        if got == 0 {
            self.done = true;
            if self.left.is_some() {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            return Ok(0);
        }
        if let Some(l) = &mut self.left {
            *l -= got as u64;
            if *l == 0 {
                if self.chunked {
                    let mut crlf = String::new();
                    self.conn.read_line(&mut crlf)?;
                } else {
                    self.done = true;
                }
            }
        }
        Ok(got)
    }
}

/// Copy docker's multiplexed stream (8-byte headers: stream, 0, 0, 0, u32 BE length)
/// from `r`: stdout frames to `out`, stderr frames to `err`, flushing each frame.
/// Returns at the end of the stream.
pub fn demux(r: &mut impl Read, out: &mut impl Write, err: &mut impl Write) -> std::io::Result<()> {
    let mut head = [0u8; 8];
    let mut buf = Vec::new();
    loop {
        match r.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let n = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
        buf.resize(n, 0);
        r.read_exact(&mut buf)?;
        match head[0] {
            2 => {
                err.write_all(&buf)?;
                err.flush()?;
            }
            _ => {
                out.write_all(&buf)?;
                out.flush()?;
            }
        }
    }
}

/// Percent-encode a query value.
pub fn enc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                o.push(b as char)
            }
            _ => o.push_str(&format!("%{b:02X}")),
        }
    }
    o
}

/// Writes a request: `head` (without its blank line) and `body` in its framing.
fn send(s: &mut UnixStream, mut head: String, body: Body) -> std::io::Result<()> {
    match body {
        Body::Empty => {
            head.push_str("\r\n");
            s.write_all(head.as_bytes())?;
        }
        Body::Json(v) => {
            let b = v.to_string();
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                b.len()
            ));
            s.write_all(head.as_bytes())?;
            s.write_all(b.as_bytes())?;
        }
        Body::Bytes(b, ct) => {
            head.push_str(&format!(
                "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
                b.len()
            ));
            s.write_all(head.as_bytes())?;
            s.write_all(b)?;
        }
        Body::Stream(r, ct) => {
            head.push_str(&format!(
                "Content-Type: {ct}\r\nTransfer-Encoding: chunked\r\n\r\n"
            ));
            s.write_all(head.as_bytes())?;
            let mut buf = vec![0u8; 256 << 10];
            loop {
                let n = r.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                write!(s, "{n:x}\r\n")?;
                s.write_all(&buf[..n])?;
                s.write_all(b"\r\n")?;
            }
            s.write_all(b"0\r\n\r\n")?;
        }
    }
    s.flush()
}

/// How long [`Client::request_with_fd`] waits for the daemon's `100 Continue`
/// (berthd sends it as soon as it has read the request's head).
const CONTINUE_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Whether `s` has something to read (or was hung up) within `wait`.
fn readable_within(s: &UnixStream, wait: std::time::Duration) -> std::io::Result<bool> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let deadline = std::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ms = PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32)
            .unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(s.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
        }
    }
}

/// A request's first line and berth's own headers, then `headers`; the caller adds
/// the body's headers and the blank line.
fn request_head(method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let mut head = format!(
        "{method} /v{API_VERSION}{path} HTTP/1.1\r\nHost: berth\r\nUser-Agent: berth/{}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn serve_once(
        reply: &'static [u8],
    ) -> (tempfile::TempDir, Client, std::thread::JoinHandle<String>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("s.sock");
        let l = UnixListener::bind(&sock).expect("bind");
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().expect("accept");
            let mut r = BufReader::new(c.try_clone().expect("clone"));
            let mut req = String::new();
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).expect("read") == 0 || line == "\r\n" {
                    break;
                }
                req.push_str(&line);
            }
            c.write_all(reply).expect("write");
            req
        });
        (dir, Client::new(sock), t)
    }

    #[test]
    fn json_reply_and_versioned_path() {
        let (_d, c, t) =
            serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n{\"Version\":1}");
        assert_eq!(c.get_json("/version?x=1").expect("get")["Version"], 1);
        assert!(t
            .join()
            .expect("join")
            .starts_with("GET /v1.45/version?x=1 HTTP/1.1\r\n"));
    }

    #[test]
    fn chunked_reply_and_error_message() {
        let (_d, c, _t) = serve_once(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[1\r\n1\r\n]\r\n0\r\n\r\n",
        );
        assert_eq!(c.get_json("/x").expect("get"), serde_json::json!([1]));
        let (_d, c, _t) = serve_once(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 27\r\n\r\n{\"message\":\"No such thing\"}",
        );
        let e = c.get_json("/x").expect_err("404");
        assert!(
            matches!(&e, Error::Api { status: 404, message } if message == "No such thing"),
            "{e}"
        );
        assert_eq!(e.to_string(), "Error response from daemon: No such thing");
    }

    #[test]
    fn a_daemon_that_ignores_expect_continue_is_named_not_waited_for() {
        use std::os::fd::AsFd;
        // an older berthd reads the head and then waits for the body
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("s.sock");
        let l = UnixListener::bind(&sock).expect("bind");
        let t = std::thread::spawn(move || {
            let (c, _) = l.accept().expect("accept");
            let mut r = BufReader::new(c);
            let mut line = String::new();
            while r.read_line(&mut line).expect("read") > 0 && !line.ends_with("\r\n\r\n") {}
            // hold the connection until the client gives up
            let mut rest = Vec::new();
            let _ = r.read_to_end(&mut rest);
            (line, rest)
        });
        let mut c = Client::new(&sock);
        c.continue_wait = std::time::Duration::from_millis(200);
        let ctx = tempfile::tempdir().expect("context");
        let fd = std::fs::File::open(ctx.path()).expect("open");
        let Err(e) = c.request_with_fd(
            "POST",
            "/build",
            (b"{}", "application/json"),
            &[],
            fd.as_fd(),
        ) else {
            panic!("a reply without 100 Continue");
        };
        assert!(
            e.to_string()
                .contains("did not answer `Expect: 100-continue`"),
            "{e}"
        );
        assert!(e.to_string().contains("older than this berth"), "{e}");
        drop(c);
        let (head, rest) = t.join().expect("join");
        assert!(head.contains("Expect: 100-continue\r\n"), "{head}");
        assert!(
            rest.is_empty(),
            "the body went without the daemon's go: {rest:?}"
        );
    }

    #[test]
    fn no_daemon_says_so() {
        let c = Client::new("/nonexistent/berth.sock");
        let e = c.get_json("/version").expect_err("no daemon");
        assert!(
            e.to_string().contains("cannot connect to the berth daemon"),
            "{e}"
        );
        assert!(!c.ping());
    }

    #[test]
    fn demux_splits_streams() {
        let mut raw = vec![1, 0, 0, 0, 0, 0, 0, 3];
        raw.extend_from_slice(b"out");
        raw.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 3]);
        raw.extend_from_slice(b"err");
        let (mut o, mut e) = (Vec::new(), Vec::new());
        demux(&mut &raw[..], &mut o, &mut e).expect("demux");
        assert_eq!((o.as_slice(), e.as_slice()), (&b"out"[..], &b"err"[..]));
    }

    #[test]
    fn enc_escapes_reserved() {
        assert_eq!(enc("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}

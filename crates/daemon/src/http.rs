//! A deliberately small HTTP/1.1 server side: one request per connection, bodies by
//! Content-Length or chunked, responses with Content-Length and `Connection: close`.
//! Enough for the Docker clients' request/response routes; streams are written raw.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};

/// Largest body we accept (a container create is a few kB).
pub const MAX_BODY: usize = 8 << 20;

/// One parsed request.
#[derive(Debug, Default)]
pub struct Request {
    /// GET, POST, ...
    pub method: String,
    /// the path without the query and without a `/vX.YY` prefix
    pub path: String,
    /// the API version from the prefix, if any
    pub version: Option<String>,
    /// query parameters (last one wins)
    pub query: HashMap<String, String>,
    /// every query parameter in order (for repeated ones: `t`, `names`, `changes`)
    pub query_list: Vec<(String, String)>,
    /// headers, names lowercased (last one wins)
    pub headers: HashMap<String, String>,
    /// body bytes (empty for routes that stream their body: see [`BodyReader`])
    pub body: Vec<u8>,
}

impl Request {
    /// Every value of a repeated query parameter, in order (`?t=a&t=b`).
    pub fn query_all(&self, k: &str) -> Vec<String> {
        self.query_list
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// Errors while reading a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// the peer sent something that is not HTTP/1.x
    #[error("bad request: {0}")]
    Bad(String),
    /// the body is larger than [`MAX_BODY`]
    #[error("request body too large (limit {MAX_BODY} bytes)")]
    TooLarge,
    /// the connection failed
    #[error("read request: {0}")]
    Io(#[from] std::io::Error),
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Split `/v1.45/containers/json` into (Some("1.45"), "/containers/json").
fn split_version(path: &str) -> (Option<String>, String) {
    if let Some(rest) = path.strip_prefix("/v") {
        if let Some((v, tail)) = rest.split_once('/') {
            if !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.') {
                return (Some(v.to_string()), format!("/{tail}"));
            }
        }
    }
    (None, path.to_string())
}

/// Read one request from `r`, body included (up to [`MAX_BODY`]).
pub fn read_request<R: Read>(r: &mut BufReader<R>) -> Result<Request, Error> {
    let mut req = read_head(r)?;
    req.body = read_body(r, &req.headers)?;
    Ok(req)
}

/// Read the request line and headers; the body is left on `r` for [`read_body`] or a
/// [`BodyReader`] (routes that take an upload of any size: load, build, archive).
pub fn read_head<R: Read>(r: &mut BufReader<R>) -> Result<Request, Error> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(Error::Bad("empty request".into()));
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(proto)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::Bad(format!(
            "malformed request line {:?}",
            line.trim()
        )));
    };
    if !proto.starts_with("HTTP/1.") {
        return Err(Error::Bad(format!("unsupported protocol {proto}")));
    }
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        if headers.len() > 200 {
            return Err(Error::Bad("too many headers".into()));
        }
    }
    let (raw_path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    let (version, path) = split_version(&decode(raw_path));
    let query_list: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect();
    let query = query_list.iter().cloned().collect();
    Ok(Request {
        method: method.to_string(),
        path,
        version,
        query,
        query_list,
        headers,
        body: Vec::new(),
    })
}

/// Read a whole body (Content-Length or chunked), at most [`MAX_BODY`] bytes.
pub fn read_body<R: Read>(
    r: &mut BufReader<R>,
    headers: &HashMap<String, String>,
) -> Result<Vec<u8>, Error> {
    if headers
        .get("content-length")
        .and_then(|l| l.parse::<u64>().ok())
        .is_some_and(|l| l > MAX_BODY as u64)
    {
        return Err(Error::TooLarge);
    }
    let mut body = Vec::new();
    BodyReader::new(r, headers)?
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => Error::Bad(e.to_string()),
            _ => Error::Io(e),
        })?;
    if body.len() > MAX_BODY {
        return Err(Error::TooLarge);
    }
    Ok(body)
}

/// A request body of any size as a reader: Content-Length bytes, or chunked decoding
/// until the last chunk, or nothing (the decoder is berth_client's, shared with the
/// client side).
pub struct BodyReader<'a, R: Read>(berth_client::BodyReader<&'a mut BufReader<R>>);

impl<'a, R: Read> BodyReader<'a, R> {
    /// The body of the request whose `headers` were just read from `r`.
    pub fn new(r: &'a mut BufReader<R>, headers: &HashMap<String, String>) -> Result<Self, Error> {
        let chunked = headers
            .get("transfer-encoding")
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
        let length = match headers.get("content-length") {
            Some(l) if !chunked => l
                .parse()
                .map_err(|_| Error::Bad(format!("bad Content-Length {l:?}")))?,
            _ => 0,
        };
        if !chunked && length > MAX_BODY as u64 * 1024 {
            // far beyond anything a client streams to us in one request
            return Err(Error::TooLarge);
        }
        Ok(BodyReader(berth_client::BodyReader::new(
            r,
            chunked,
            Some(length),
        )))
    }
}

impl<R: Read> Read for BodyReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        _ => "Unknown",
    }
}

/// Write a complete response.
pub fn respond<W: Write>(
    w: &mut W,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    // one write for the head (each `write!` piece would be a system call on a socket)
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nApi-Version: {}\r\nDocker-Experimental: false\r\nOstype: linux\r\nServer: berth/{}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        crate::API_VERSION,
        env!("CARGO_PKG_VERSION"),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    w.write_all(&out)?;
    w.flush()
}

/// Start a streamed reply: status line and headers with `Transfer-Encoding: chunked`;
/// follow with [`write_chunk`]s and [`end_chunked`].
pub fn start_chunked<W: Write>(w: &mut W, status: u16, content_type: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nApi-Version: {}\r\nDocker-Experimental: false\r\nOstype: linux\r\nServer: berth/{}\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        reason(status),
        crate::API_VERSION,
        env!("CARGO_PKG_VERSION"),
    );
    w.write_all(head.as_bytes())?;
    w.flush()
}

/// One chunk of a streamed reply, in one write (flushed, so the client sees it at once).
pub fn write_chunk<W: Write>(w: &mut W, data: &[u8]) -> std::io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let mut c = Vec::with_capacity(data.len() + 12);
    let _ = write!(c, "{:x}\r\n", data.len());
    c.extend_from_slice(data);
    c.extend_from_slice(b"\r\n");
    w.write_all(&c)?;
    w.flush()
}

/// berth's descriptor passing (see `berth_client::Client::request_with_fd`): answer
/// `100 Continue` to a request that expects it, then read its body of `len` bytes, the
/// first of which carry a descriptor (SCM_RIGHTS). Nothing of the body may have been
/// read yet (the client sends it only after the `100`).
pub fn receive_fd_body(
    r: &mut BufReader<std::os::unix::net::UnixStream>,
    w: &mut std::os::unix::net::UnixStream,
    len: usize,
) -> Result<(Vec<u8>, std::os::fd::OwnedFd), Error> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{AsRawFd, RawFd};
    if !r.buffer().is_empty() {
        return Err(Error::Bad(
            "the body came before 100 Continue: send it only after the daemon's answer".into(),
        ));
    }
    if len == 0 || len > MAX_BODY {
        return Err(Error::Bad(format!(
            "a body of {len} bytes cannot carry a descriptor: send 1 to {MAX_BODY}"
        )));
    }
    w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    w.flush()?;
    let mut body = vec![0u8; len];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let (n, mut fds) = loop {
        let mut iov = [std::io::IoSliceMut::new(&mut body)];
        match recvmsg::<()>(
            r.get_ref().as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(Error::Io(e.into())),
            Ok(m) => {
                let mut fds = Vec::new();
                for c in m.cmsgs().map_err(|e| Error::Io(e.into()))? {
                    if let ControlMessageOwned::ScmRights(raw) = c {
                        fds.extend(raw.into_iter().map(berth_sys::proc::own_fd));
                    }
                }
                break (m.bytes, fds);
            }
        }
    };
    if n == 0 {
        return Err(Error::Bad(
            "the client closed before sending the body".into(),
        ));
    }
    r.read_exact(&mut body[n..])?;
    if fds.len() != 1 {
        return Err(Error::Bad(format!(
            "expected one descriptor with the body, got {}",
            fds.len()
        )));
    }
    let fd = fds.remove(0);
    Ok((body, fd))
}

/// The last chunk of a streamed reply.
pub fn end_chunked<W: Write>(w: &mut W) -> std::io::Result<()> {
    w.write_all(b"0\r\n\r\n")?;
    w.flush()
}

/// Whether the client closed (or half-closed) its side of the connection `r` reads:
/// a peek that neither blocks nor consumes anything and leaves the socket's mode alone
/// (another thread may be writing on it), so a streamed route can stop its work.
pub fn peer_closed(r: &BufReader<std::os::unix::net::UnixStream>) -> bool {
    use nix::sys::socket::{recv, MsgFlags};
    use std::os::fd::AsRawFd;
    if !r.buffer().is_empty() {
        return false;
    }
    let mut b = [0u8; 1];
    match recv(
        r.get_ref().as_raw_fd(),
        &mut b,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e != nix::errno::Errno::EAGAIN && e != nix::errno::Errno::EINTR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versioned_path_query_and_body() {
        let raw = b"POST /v1.41/containers/create?name=ax&x=a%20b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}";
        let r = read_request(&mut BufReader::new(&raw[..])).expect("parse");
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/containers/create");
        assert_eq!(r.version.as_deref(), Some("1.41"));
        assert_eq!(r.query["name"], "ax");
        assert_eq!(r.query["x"], "a b");
        assert_eq!(r.body, b"{}");
    }

    #[test]
    fn chunked_body_and_unversioned_path() {
        let raw =
            b"POST /build HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let r = read_request(&mut BufReader::new(&raw[..])).expect("parse");
        assert_eq!(r.path, "/build");
        assert_eq!(r.version, None);
        assert_eq!(r.body, b"abc");
    }

    #[test]
    fn garbage_is_a_bad_request() {
        assert!(read_request(&mut BufReader::new(&b"hello\r\n\r\n"[..])).is_err());
        let huge = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(matches!(
            read_request(&mut BufReader::new(huge.as_bytes())),
            Err(Error::TooLarge)
        ));
    }

    #[test]
    fn body_reader_streams_chunked_and_sized_bodies() {
        let raw = b"POST /build HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nNEXT";
        let mut r = BufReader::new(&raw[..]);
        let head = read_head(&mut r).expect("head");
        let mut body = Vec::new();
        BodyReader::new(&mut r, &head.headers)
            .expect("reader")
            .read_to_end(&mut body)
            .expect("read");
        assert_eq!(body, b"abcde");
        let mut rest = String::new();
        r.read_to_string(&mut rest).expect("rest");
        assert_eq!(rest, "NEXT", "the reader stops at the end of the body");

        let raw = b"PUT /x HTTP/1.1\r\nContent-Length: 4\r\n\r\nwxyzNEXT";
        let mut r = BufReader::new(&raw[..]);
        let head = read_head(&mut r).expect("head");
        let mut body = Vec::new();
        BodyReader::new(&mut r, &head.headers)
            .expect("reader")
            .read_to_end(&mut body)
            .expect("read");
        assert_eq!(body, b"wxyz");
    }
}

//! A small SIP test peer of the project's own: a UDP or TCP endpoint on loopback
//! that sends requests and responses it builds itself, and receives and parses
//! messages with a deadline. Scripts for a UAC and a UAS are plain async code.

use std::net::SocketAddr;
use std::time::Duration;

use exum_router::model::wire::{DEFAULT_MAX_MESSAGE, Frame, Message, Name, frame_stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long a peer waits for a message before the test fails.
pub const WAIT: Duration = Duration::from_secs(5);

/// A UDP SIP endpoint.
pub struct UdpPeer {
    /// The socket.
    pub socket: UdpSocket,
    /// Its address.
    pub addr: SocketAddr,
}

impl UdpPeer {
    /// Binds 127.0.0.1 on an ephemeral port.
    pub async fn bind() -> UdpPeer {
        UdpPeer::bind_on("127.0.0.1:0".parse().expect("addr")).await
    }

    /// Binds `addr` (another loopback address, for a second source).
    pub async fn bind_on(addr: SocketAddr) -> UdpPeer {
        let socket = UdpSocket::bind(addr).await.expect("bind");
        let addr = socket.local_addr().expect("addr");
        UdpPeer { socket, addr }
    }

    /// Sends text to `to`.
    pub async fn send(&self, to: SocketAddr, text: &str) {
        self.socket.send_to(text.as_bytes(), to).await.expect("send");
    }

    /// The next message, or `None` after `wait`.
    pub async fn recv_within(&self, wait: Duration) -> Option<(Message, SocketAddr)> {
        let mut buf = vec![0u8; 65_535];
        let (n, from) = tokio::time::timeout(wait, self.socket.recv_from(&mut buf)).await.ok()?.ok()?;
        Some((Message::parse(buf[..n].to_vec(), false, DEFAULT_MAX_MESSAGE).expect("the router sends valid SIP"), from))
    }

    /// A message received already, if any (does not wait).
    pub fn try_recv(&self) -> Option<Message> {
        let mut buf = vec![0u8; 65_535];
        let (n, _) = self.socket.try_recv_from(&mut buf).ok()?;
        Message::parse(buf[..n].to_vec(), false, DEFAULT_MAX_MESSAGE).ok()
    }

    /// The next message (panics after [`WAIT`]).
    pub async fn recv(&self) -> (Message, SocketAddr) {
        self.recv_within(WAIT).await.expect("a message within the wait")
    }

    /// The next request with `method`, skipping others (panics after [`WAIT`]).
    pub async fn expect_request(&self, method: &str) -> (Message, SocketAddr) {
        loop {
            let (m, from) = self.recv().await;
            if m.method() == Some(method) {
                return (m, from);
            }
        }
    }

    /// The next response with `code`, skipping others (panics after [`WAIT`]).
    pub async fn expect_response(&self, code: u16) -> Message {
        loop {
            let (m, _) = self.recv().await;
            if m.status() == Some(code) {
                return m;
            }
        }
    }

    /// The next final response (≥ 200), skipping provisional ones.
    pub async fn final_response(&self) -> Message {
        loop {
            let (m, _) = self.recv().await;
            if m.status().is_some_and(|c| c >= 200) {
                return m;
            }
        }
    }
}

/// A SIP connection over a byte stream: TCP ([`TcpPeer`]) or TLS.
pub struct StreamPeer<S> {
    /// The stream (a TLS stream tells its peer's certificates).
    pub stream: S,
    buf: Vec<u8>,
    /// Local address.
    pub addr: SocketAddr,
}

/// A TCP SIP connection.
pub type TcpPeer = StreamPeer<TcpStream>;

impl TcpPeer {
    /// Connects to `to`.
    pub async fn connect(to: SocketAddr) -> TcpPeer {
        TcpPeer::from_stream(TcpStream::connect(to).await.expect("connect"))
    }

    /// A peer on an accepted (or otherwise connected) stream.
    pub fn from_stream(stream: TcpStream) -> TcpPeer {
        let addr = stream.local_addr().expect("addr");
        StreamPeer::new(stream, addr)
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> StreamPeer<S> {
    /// A peer on `stream`, whose local address is `addr`.
    pub fn new(stream: S, addr: SocketAddr) -> StreamPeer<S> {
        StreamPeer { stream, buf: Vec::new(), addr }
    }

    /// Writes raw bytes.
    pub async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next message, or `None` on close or after `wait`.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match frame_stream(&self.buf, DEFAULT_MAX_MESSAGE) {
                Ok(Frame::Message(n)) => {
                    let bytes: Vec<u8> = self.buf.drain(..n).collect();
                    return Some(Message::parse(bytes, true, DEFAULT_MAX_MESSAGE).expect("valid SIP"));
                }
                Ok(Frame::KeepAlive(n)) => {
                    self.buf.drain(..n);
                    continue;
                }
                Ok(Frame::Incomplete) => {}
                Err(e) => panic!("the router sent a bad frame: {e}"),
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await.ok()?.ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Whether the router closed the connection within `wait`.
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let mut chunk = [0u8; 4096];
        matches!(tokio::time::timeout(wait, self.stream.read(&mut chunk)).await, Ok(Ok(0)) | Ok(Err(_)))
    }

    /// The next final response (≥ 200), skipping provisional ones (panics after [`WAIT`]).
    pub async fn final_response(&mut self) -> Message {
        loop {
            let m = self.recv_within(WAIT).await.expect("a response within the wait");
            if m.status().is_some_and(|c| c >= 200) {
                return m;
            }
        }
    }
}

/// An INVITE (or other method) from `from_addr` with the given identifiers.
pub fn request(
    method: &str,
    ruri: &str,
    from_addr: SocketAddr,
    transport: &str,
    call_id: &str,
    branch: &str,
) -> String {
    let to = ruri.split(';').next().unwrap_or(ruri);
    format!(
        "{method} {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {from_addr};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:caller@fabrikam.com>;tag=caller-{call_id}\r\n\
         To: <{to}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:caller@{from_addr}>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// [`request`] over UDP, its branch `z9hG4bK-<call_id>`.
pub fn udp_request(method: &str, ruri: &str, from_addr: SocketAddr, call_id: &str) -> String {
    request(method, ruri, from_addr, "UDP", call_id, &format!("z9hG4bK-{call_id}"))
}

/// A response to `req` with `code`, copying its Vias, From, To (adding `to_tag`),
/// Call-ID and CSeq, plus extra header lines.
pub fn response(req: &Message, code: u16, to_tag: &str, extra: &str) -> String {
    let mut out = format!("SIP/2.0 {code} Reason\r\n");
    for v in req.values(Name::Via) {
        out.push_str(&format!("Via: {v}\r\n"));
    }
    out.push_str(&format!("From: {}\r\n", req.first(Name::From).unwrap_or("")));
    let to = req.first(Name::To).unwrap_or("");
    if code > 100 && req.to_tag().is_none() {
        out.push_str(&format!("To: {to};tag={to_tag}\r\n"));
    } else {
        out.push_str(&format!("To: {to}\r\n"));
    }
    out.push_str(&format!("Call-ID: {}\r\n", req.first(Name::CallId).unwrap_or("")));
    out.push_str(&format!("CSeq: {}\r\n", req.first(Name::CSeq).unwrap_or("")));
    out.push_str(extra);
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

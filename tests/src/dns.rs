//! A DNS server on loopback for the tests of RFC 3263 resolution: it answers
//! queries from a fixed set of records (A, SRV, NAPTR), NXDOMAIN otherwise, and
//! counts the queries it got.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, NAPTR, SRV};
use hickory_proto::rr::{Name, RData, Record};
use tokio::net::UdpSocket;

/// Records to serve, built with [`a`], [`srv`] and [`naptr`].
pub type Records = Vec<Record>;

fn name(n: &str) -> Name {
    Name::from_ascii(format!("{}.", n.trim_end_matches('.'))).expect("a DNS name")
}

/// An A record.
pub fn a(host: &str, ip: Ipv4Addr) -> Record {
    Record::from_rdata(name(host), 60, RData::A(A(ip)))
}

/// An SRV record.
pub fn srv(owner: &str, priority: u16, weight: u16, port: u16, target: &str) -> Record {
    Record::from_rdata(name(owner), 60, RData::SRV(SRV::new(priority, weight, port, name(target))))
}

/// A NAPTR record with flag "s" for `service` (e.g. `SIP+D2T`) pointing to `replacement`.
pub fn naptr(owner: &str, order: u16, preference: u16, service: &str, replacement: &str) -> Record {
    let data =
        NAPTR::new(order, preference, Box::from(*b"s"), service.as_bytes().into(), Box::from(*b""), name(replacement));
    Record::from_rdata(name(owner), 60, RData::NAPTR(data))
}

/// A running server: its address and how many queries it answered.
pub struct DnsServer {
    /// Where it listens (UDP).
    pub addr: SocketAddr,
    /// Queries received.
    pub queries: Arc<AtomicU64>,
}

/// Starts a server answering from `records`.
pub async fn serve(records: Records) -> DnsServer {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
    let queries = Arc::new(AtomicU64::new(0));
    let count = queries.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let Ok(query) = Message::from_vec(&buf[..n]) else { continue };
            count.fetch_add(1, Ordering::Relaxed);
            let mut answer = Message::new();
            answer
                .set_id(query.id())
                .set_message_type(MessageType::Response)
                .set_op_code(OpCode::Query)
                .set_authoritative(true)
                .set_recursion_desired(query.recursion_desired())
                .set_recursion_available(true);
            let mut found = false;
            for q in query.queries() {
                answer.add_query(q.clone());
                for r in records.iter().filter(|r| r.name() == q.name()) {
                    if r.record_type() == q.query_type() {
                        answer.add_answer(r.clone());
                        found = true;
                    }
                }
            }
            let known = query.queries().iter().any(|q| records.iter().any(|r| r.name() == q.name()));
            answer.set_response_code(if found || known { ResponseCode::NoError } else { ResponseCode::NXDomain });
            if let Ok(bytes) = answer.to_vec() {
                let _ = socket.send_to(&bytes, from).await;
            }
        }
    });
    DnsServer { addr, queries }
}

//! The torture corpus (`tests/torture/`, after RFC 4475 §3.1-3.4 and RFC 5118 §4)
//! over a real socket: every message gets the answer its manifest names (routed
//! to the tenant's next hop and answered by it; the status the router answers
//! itself, with the Warning naming the problem; or dropped and counted), and a
//! valid voice-mail call succeeds after each.

use std::net::SocketAddr;
use std::path::PathBuf;

use exum_router::metrics::Dropped;
use exum_router::model::Transport;
use exum_router::model::wire::{Message, Name};
use exum_router::server::Server;
use exum_router_tests::peer::{UdpPeer, response, udp_request};

/// One `[[message]]` of `corpus.toml`.
#[derive(Debug, serde::Deserialize)]
struct Case {
    file: String,
    class: String,
    expect: toml::Value,
    warning: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
struct Corpus {
    message: Vec<Case>,
}

/// What the router must do with a message.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Routed,
    Answer(u16),
    Dropped,
}

impl Case {
    fn expect(&self) -> Expect {
        match &self.expect {
            toml::Value::String(s) if s == "routed" => Expect::Routed,
            toml::Value::String(s) if s == "dropped" => Expect::Dropped,
            toml::Value::Integer(code) => Expect::Answer(u16::try_from(*code).expect("a status code")),
            other => panic!("{}: unknown expectation {other}", self.file),
        }
    }
}

fn corpus_dir() -> PathBuf {
    exum_router_tests::workspace().join("tests/torture")
}

/// Bytes with the placeholders replaced (the corpus keeps them out of bodies).
fn fill(bytes: &[u8], peer: SocketAddr, router: SocketAddr, call_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 64);
    let mut rest = bytes;
    while let Some(start) = rest.windows(2).position(|w| w == b"{{") {
        let Some(len) = rest[start..].windows(2).position(|w| w == b"}}") else { break };
        out.extend_from_slice(&rest[..start]);
        match &rest[start + 2..start + len] {
            b"PEER" => out.extend_from_slice(peer.to_string().as_bytes()),
            b"ROUTER" => out.extend_from_slice(router.to_string().as_bytes()),
            b"CALLID" => out.extend_from_slice(call_id.as_bytes()),
            other => panic!("unknown placeholder {}", String::from_utf8_lossy(other)),
        }
        rest = &rest[start + len + 2..];
    }
    out.extend_from_slice(rest);
    out
}

fn dropped_total(server: &Server) -> u64 {
    [Dropped::Unparseable, Dropped::NoVia, Dropped::StrayResponse, Dropped::StrayAck, Dropped::Refused]
        .iter()
        .map(|d| server.metrics.dropped_of(*d))
        .sum()
}

/// The next request the next hop receives for `call_id` (others skipped).
async fn next_hop_receives(hop: &UdpPeer, call_id: &str) -> Option<(Message, SocketAddr)> {
    loop {
        let (m, from) = hop.recv_within(exum_router_tests::peer::WAIT).await?;
        if m.is_request() && m.method() != Some("ACK") && m.first(Name::CallId) == Some(call_id) {
            return Some((m, from));
        }
    }
}

/// The first final response `caller` receives for `call_id` (by its Call-ID,
/// or by its branch for a request that has no Call-ID).
async fn final_for(caller: &UdpPeer, call_id: &str) -> Option<Message> {
    loop {
        let (m, _) = caller.recv_within(exum_router_tests::peer::WAIT).await?;
        let ours = m.first(Name::CallId) == Some(call_id)
            || m.top_via().and_then(|v| v.branch).is_some_and(|b| b.contains(call_id));
        if m.status().is_some_and(|c| c >= 200) && ours {
            return Some(m);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_torture_message_gets_its_answer_and_a_valid_call_follows() {
    let hop = UdpPeer::bind().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // One receiving task: datagrams are handled in the order sent, so a dropped
    // message is known to be handled once the next one is answered.
    let config = format!(
        "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n\
         [sip]\nudp_receivers = 1\n[probes]\nenabled = false\n\
         [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\ndefault_next_hop = \"sip:{}\"\n",
        hop.addr
    );
    let directory = format!(
        "[[tenants.contoso.users]]\nsip = \"sip:bob@contoso.com\"\neum = \"eum:bob@contoso.com;phone-context=DP1\"\n\
         [[tenants.contoso.dial_plans]]\nname = \"DP1\"\nphone_context = \"DP1\"\nservers = [{{ uri = \"sip:{}\" }}]\n",
        hop.addr
    );
    std::fs::write(dir.path().join("router.toml"), config).expect("write");
    std::fs::write(dir.path().join("directory.toml"), directory).expect("write");
    let server = Server::start(&dir.path().join("router.toml")).await.expect("the router starts");
    let router = server.local_addr(Transport::Udp).expect("udp");

    let text = std::fs::read_to_string(corpus_dir().join("corpus.toml")).expect("corpus.toml");
    let corpus: Corpus = toml::from_str(&text).expect("corpus.toml parses");
    assert!(corpus.message.len() >= 40, "the corpus has every class");
    let mut failures = Vec::new();
    for (i, case) in corpus.message.iter().enumerate() {
        // A socket per message: answers the router retransmits (an unACKed
        // error to an INVITE) do not reach the next case.
        let caller = UdpPeer::bind().await;
        let call_id = format!("torture-{i}");
        let raw = std::fs::read(corpus_dir().join(&case.file)).expect("the message file");
        let bytes = fill(&raw, caller.addr, router, &call_id);
        let dropped_before = dropped_total(&server);
        caller.socket.send_to(&bytes, router).await.expect("send");
        let outcome = match case.expect() {
            Expect::Routed => match next_hop_receives(&hop, &call_id).await {
                None => Err("the next hop never received it".to_owned()),
                Some((req, from)) => {
                    hop.send(from, &response(&req, 200, "hop", "")).await;
                    match final_for(&caller, &call_id).await {
                        Some(r) if r.status() == Some(200) => Ok(()),
                        other => Err(format!("the next hop's 200 did not come back: {other:?}")),
                    }
                }
            },
            Expect::Answer(code) => match final_for(&caller, &call_id).await {
                Some(r) if r.status() == Some(code) => {
                    let warning = r.header("Warning").unwrap_or("");
                    match &case.warning {
                        Some(w) if !warning.to_ascii_lowercase().contains(&w.to_ascii_lowercase()) => {
                            Err(format!("{code} without `{w}` in its Warning: {warning}"))
                        }
                        _ => Ok(()),
                    }
                }
                other => Err(format!("expected {code}, got {:?}", other.map(|r| r.status()))),
            },
            Expect::Dropped => {
                // The router handles datagrams in order: once it answers the
                // OPTIONS sent next, the message was handled.
                let ping = format!("ping-{i}");
                caller.send(router, &udp_request("OPTIONS", &format!("sip:{router}"), caller.addr, &ping)).await;
                let first = caller.recv_within(exum_router_tests::peer::WAIT).await.map(|(m, _)| m);
                match first {
                    Some(m) if m.first(Name::CallId) == Some(ping.as_str()) => {
                        if dropped_total(&server) == dropped_before + 1 {
                            Ok(())
                        } else {
                            Err(format!(
                                "not counted as dropped ({} before, {} after)",
                                dropped_before,
                                dropped_total(&server)
                            ))
                        }
                    }
                    other => Err(format!("an answer to a message that must be dropped: {other:?}")),
                }
            }
        };
        if let Err(why) = outcome {
            failures.push(format!("{} ({}): {why}", case.file, case.class));
        }
        // A valid voice-mail call succeeds after every message.
        let call = format!("valid-{i}");
        caller
            .send(router, &udp_request("INVITE", "sip:bob@contoso.com;opaque=app:voicemail", caller.addr, &call))
            .await;
        let (inv, from) = next_hop_receives(&hop, &call)
            .await
            .unwrap_or_else(|| panic!("after {}: the valid call reached the UM server", case.file));
        hop.send(from, &response(&inv, 200, "um", &format!("Contact: <sip:{}>\r\n", hop.addr))).await;
        let ok = final_for(&caller, &call)
            .await
            .unwrap_or_else(|| panic!("after {}: the valid call was answered", case.file));
        assert_eq!(ok.status(), Some(200), "after {}", case.file);
    }
    assert!(
        failures.is_empty(),
        "{} of {} messages answered wrongly:\n{}",
        failures.len(),
        corpus.message.len(),
        failures.join("\n")
    );
}

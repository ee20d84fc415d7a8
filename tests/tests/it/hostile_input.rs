//! Hostile and tricky SIP over a real socket, after RFC 4475's classes: each
//! message gets a precise answer (a 400 naming the problem, or the status the
//! RFC gives), is routed when it is valid after all, or is dropped when nothing
//! can be answered; the router is unharmed and the next valid call goes through.

use exum_router::model::wire::Name;
use exum_router_tests::LabBuilder;
use exum_router_tests::lab::invite;
use exum_router_tests::peer::{UdpPeer, response};

const BOB: &str = "sip:bob@contoso.com;opaque=app:voicemail";

/// What the router must do with a case.
#[derive(Debug)]
enum Expect {
    /// Forward it to the UM server (tricky but valid).
    Routed,
    /// Answer with this status, and a Warning containing this text when given.
    Answer(u16, Option<&'static str>),
    /// Nothing can be answered: drop it.
    Dropped,
}

struct Peers {
    caller: UdpPeer,
    um: UdpPeer,
}

type Lab = exum_router_tests::Lab<Peers>;

async fn lab() -> Lab {
    let (caller, um) = (UdpPeer::bind().await, UdpPeer::bind().await);
    // One receiving task: datagrams are handled in the order sent, so a dropped
    // message is known to be dropped once the next one is answered.
    let config = "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n\
                  [sip]\nudp_receivers = 1\n[probes]\nenabled = false\n\
                  [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\n";
    let directory = format!(
        "[[tenants.contoso.users]]\nsip = \"sip:bob@contoso.com\"\neum = \"eum:bob@contoso.com;phone-context=DP1\"\n\
         [[tenants.contoso.dial_plans]]\nname = \"DP1\"\nphone_context = \"DP1\"\nservers = [{{ uri = \"sip:{}\" }}]\n",
        um.addr
    );
    LabBuilder::new().config(config).directory(&directory).start(Peers { caller, um }).await
}

/// The message without its lines starting with `prefix`.
fn strip_line(message: &str, prefix: &str) -> String {
    message.split_inclusive("\r\n").filter(|l| !l.starts_with(prefix)).collect()
}

/// The cases: a name (the Call-ID where the message has one), the message, and
/// what must happen.
fn cases(lab: &Lab) -> Vec<(&'static str, String, Expect)> {
    let base = |id: &str| invite(lab.caller.addr, BOB, id);
    let with = |id: &str, from: &str, to: &str| {
        let b = base(id);
        assert!(b.contains(from), "{id}: `{from}` is in the base message");
        b.replacen(from, to, 1)
    };
    let long = "x".repeat(8000);
    let many_headers: String = (0..5000).map(|i| format!("X-H{i}: 1\r\n")).collect();
    vec![
        // Unusual but valid: whitespace around the colon, tabs, folded lines,
        // compact forms, escaped characters, long values, other URI schemes.
        (
            "ws",
            with("ws", "Max-Forwards: 70\r\n", "Max-Forwards  :\t 70\r\nSubject: a\r\n  folded\r\n\tvalue\r\n")
                .replacen("Content-Length: 0", "l: 0", 1),
            Expect::Routed,
        ),
        (
            "esc",
            with("esc", "From: <sip:caller@fabrikam.com>", "From: \"J\\\"o\\\\e\" <sip:c%61ller@fabrikam.com>"),
            Expect::Routed,
        ),
        (
            "longvalue",
            with("longvalue", "Max-Forwards: 70\r\n", &format!("Max-Forwards: 70\r\nX-Long: {long}\r\n")),
            Expect::Routed,
        ),
        (
            "otherschemes",
            with("otherschemes", "Contact: <sip:caller@", "Contact: <urn:x-weird:caller>, <sip:caller@"),
            Expect::Routed,
        ),
        ("unknownscheme", with("unknownscheme", "INVITE sip:", "INVITE nosuch:"), Expect::Answer(416, None)),
        // Content-Length missing (UDP: the datagram's end), too large, too
        // small (the rest is dropped), negative, repeated.
        ("clmissing", with("clmissing", "Content-Length: 0\r\n", ""), Expect::Routed),
        (
            "cltoolarge",
            with("cltoolarge", "Content-Length: 0", "Content-Length: 5000"),
            Expect::Answer(400, Some("Content-Length")),
        ),
        (
            "cltoosmall",
            format!("{}v=0\r\n", with("cltoosmall", "Content-Length: 0", "Content-Length: 2")),
            Expect::Routed,
        ),
        (
            "clnegative",
            with("clnegative", "Content-Length: 0", "Content-Length: -5"),
            Expect::Answer(400, Some("Content-Length")),
        ),
        (
            "clrepeated",
            with("clrepeated", "Content-Length: 0", "Content-Length: 0\r\nContent-Length: 4"),
            Expect::Answer(400, Some("Content-Length")),
        ),
        // Scalar fields overflowing.
        (
            "mfoverflow",
            with("mfoverflow", "Max-Forwards: 70", "Max-Forwards: 300"),
            Expect::Answer(400, Some("Max-Forwards")),
        ),
        (
            "mfhuge",
            with("mfhuge", "Max-Forwards: 70", "Max-Forwards: 99999999999999999999"),
            Expect::Answer(400, Some("Max-Forwards")),
        ),
        (
            "cseqoverflow",
            with("cseqoverflow", "CSeq: 1 INVITE", "CSeq: 4294967296 INVITE"),
            Expect::Answer(400, Some("CSeq")),
        ),
        (
            "expiresoverflow",
            with("expiresoverflow", "Max-Forwards: 70", "Max-Forwards: 70\r\nExpires: 99999999999999999999"),
            Expect::Routed,
        ),
        (
            "statusoverflow",
            format!(
                "SIP/2.0 4294967301 Huge\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-x\r\nCall-ID: statusoverflow\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
                lab.router
            ),
            Expect::Dropped,
        ),
        // Unterminated quotes and brackets.
        (
            "openquote",
            with("openquote", "From: <sip:caller@fabrikam.com>", "From: \"caller <sip:caller@fabrikam.com>"),
            Expect::Answer(400, Some("From")),
        ),
        (
            "openbracket",
            with("openbracket", "To: <sip:bob@contoso.com>", "To: <sip:bob@contoso.com"),
            Expect::Answer(400, Some("To")),
        ),
        // Two messages in one datagram: the first is taken, the rest is not a message.
        ("twomessages", format!("{}{}", base("twomessages"), base("twomessages-second")), Expect::Routed),
        // Request-line and Via errors.
        ("badversion", with("badversion", " SIP/2.0\r\n", " SIP/7.0\r\n"), Expect::Answer(505, None)),
        ("spacesinline", with("spacesinline", "INVITE sip:", "INVITE  sip:"), Expect::Answer(400, Some("start line"))),
        ("noVia", strip_line(&base("noVia"), "Via:"), Expect::Dropped),
        ("badVia", with("badVia", "Via: SIP/2.0/UDP ", "Via: SIP/2.0/UDP ;garbage "), Expect::Dropped),
        // A NUL byte in the head.
        ("nul", with("nul", "To: ", "To:\0 "), Expect::Dropped),
        // Huge header counts.
        (
            "manyheaders",
            with("manyheaders", "Max-Forwards: 70\r\n", &format!("Max-Forwards: 70\r\n{many_headers}")),
            Expect::Answer(400, Some("header fields")),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_class_of_hostile_input_gets_its_answer_and_the_next_call_is_fine() {
    let lab = lab().await;
    for (i, (name, message, expect)) in cases(&lab).into_iter().enumerate() {
        lab.caller.send(lab.router, &message).await;
        match expect {
            Expect::Routed => {
                let (inv, from) = lab.um.expect_request("INVITE").await;
                assert_eq!(inv.first(Name::CallId), Some(name), "{name}: routed");
                lab.um.send(from, &response(&inv, 200, "um", "")).await;
                let ok = lab.caller.final_response().await;
                assert_eq!((ok.status(), ok.first(Name::CallId)), (Some(200), Some(name)), "{name}");
            }
            Expect::Answer(code, warning) => {
                let r = lab.caller.final_response().await;
                assert_eq!(r.status(), Some(code), "{name}: {r:?}");
                if let Some(w) = warning {
                    assert!(r.header("Warning").is_some_and(|h| h.contains(w)), "{name}: a Warning naming {w}: {r:?}");
                }
            }
            Expect::Dropped => {}
        }
        // The next valid call: the UM server's next INVITE is this one (the
        // hostile message was not forwarded), and the caller's next final
        // response is its 200 (nothing was answered to a dropped message).
        let ok_id = format!("ok-{i}");
        lab.caller.send(lab.router, &invite(lab.caller.addr, BOB, &ok_id)).await;
        let (inv, from) = lab.um.expect_request("INVITE").await;
        assert_eq!(inv.first(Name::CallId), Some(ok_id.as_str()), "after {name}: the UM server's next INVITE");
        lab.um.send(from, &response(&inv, 200, "um", "")).await;
        let ok = lab.caller.final_response().await;
        assert_eq!((ok.status(), ok.first(Name::CallId)), (Some(200), Some(ok_id.as_str())), "after {name}");
    }
}

//! Criterion benchmarks of the SIP plane's hot path:
//! - the wire layer framing and indexing a typical ~900-byte INVITE, against
//!   rsip parsing the same bytes (the ratio the design is built on);
//! - the forwarding edits (new Via, Max-Forwards, Diversion rewrite);
//! - the whole in-process path from the received bytes to the bytes sent to the
//!   UM server: index, request view, standard-policy decision through the
//!   engine, edits.
//!
//! `cargo bench -p exum-bench --bench wire`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use exum_bench::{EnginePlane, invite_bytes};
use exum_router::model::wire::{self, Frame, Message, frame_stream};
use exum_router::model::{Source, Transport};
use exum_router::policy::contract::Decision;
use exum_router::policy::view;
use exum_router::sip::proxy::validate::validate;

fn wire_layer(c: &mut Criterion) {
    let text = invite_bytes("sip:bob@contoso.com;opaque=app:voicemail");
    let bytes = text.as_bytes().to_vec();
    let mut group = c.benchmark_group("invite_900_bytes");
    group.bench_function("wire_frame_and_index", |b| {
        b.iter(|| {
            let Ok(Frame::Message(n)) = frame_stream(black_box(&bytes), wire::DEFAULT_MAX_MESSAGE) else {
                unreachable!()
            };
            black_box(Message::parse(bytes[..n].to_vec(), true, wire::DEFAULT_MAX_MESSAGE).ok())
        })
    });
    group.bench_function("wire_index_datagram", |b| {
        b.iter(|| black_box(Message::parse(black_box(bytes.clone()), false, wire::DEFAULT_MAX_MESSAGE).ok()))
    });
    group.bench_function("rsip_parse", |b| {
        b.iter(|| black_box(rsip::SipMessage::try_from(black_box(bytes.as_slice())).ok()))
    });
    let msg = Message::parse(bytes.clone(), false, wire::DEFAULT_MAX_MESSAGE).expect("parses");
    group.bench_function("validate_rfc3261_16_3", |b| b.iter(|| black_box(validate(black_box(&msg), false))));
    group.bench_function("wire_forward_edits", |b| {
        b.iter(|| {
            black_box(
                msg.edit()
                    .received(([192, 0, 2, 10], 5061).into())
                    .prepend_via("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-0123456789abcdef-1;rport".into())
                    .max_forwards(68)
                    .remove("Diversion")
                    .add("Diversion", "<sip:bob@contoso.com>;reason=no-answer")
                    .finish(),
            )
        })
    });
    group.finish();
}

fn whole_path(c: &mut Criterion) {
    let plane = EnginePlane::deployment();
    let text = invite_bytes("sip:bob@contoso.com;opaque=app:voicemail");
    let bytes = text.as_bytes().to_vec();
    let source =
        Source { addr: ([192, 0, 2, 10], 5061).into(), transport: Transport::Udp, tls_peer_name: None, local: None };
    let (tenant, policy, _) = plane.call("sip:bob@contoso.com;opaque=app:voicemail");
    c.bench_function("received_bytes_to_forwarded_bytes", |b| {
        b.iter(|| {
            let msg = Message::parse(black_box(bytes.clone()), false, wire::DEFAULT_MAX_MESSAGE).expect("parses");
            validate(&msg, false).expect("valid");
            let req = view::request_view(&msg, &source).expect("view");
            let verdict = policy.route(&tenant, &req);
            let Decision::Forward(f) = verdict.decision else { panic!("not a forward: {verdict:?}") };
            let mut edit = msg
                .edit()
                .received(source.addr)
                .prepend_via("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-x-1;rport".into());
            for name in &f.remove_headers {
                edit = edit.remove(name);
            }
            for h in &f.add_headers {
                edit = edit.add(&h.name, &h.value);
            }
            black_box(edit.max_forwards(68).finish())
        })
    });
}

criterion_group!(benches, wire_layer, whole_path);
criterion_main!(benches);

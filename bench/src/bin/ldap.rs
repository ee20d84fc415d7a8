//! A tenant's users from LDAP, measured against an OpenLDAP server of its own
//! (`exum_router_tests::slapd`, as the tests start it):
//!
//! `ldap [users]` (100,000): the users added with `ldapadd`; then
//! - a router process (`exum-router serve`) started on them: time to `/ready`
//!   and RSS, against the same users from a directory file;
//! - in this process: a full read (connect, bind, paged search, mapping), the
//!   tenant rebuilt with them (validation and indexes), a poll that finds no
//!   change, and one that finds one change (`ldapmodify`) and rebuilds.
//!
//! Build first: `cargo build --release -p exum-router -p exum-bench`.
//! Writes `bench/results/ldap.md`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use exum_router::control::Tenants;
use exum_router_tests::slapd::{READER, READER_PASSWORD, SUFFIX, Slapd};

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let users: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let slapd = tokio::task::spawn_blocking(|| Slapd::start(None)).await.expect("join");
    let mut ldif = String::with_capacity(users * 300);
    for i in 0..users {
        let _ = write!(
            ldif,
            "dn: cn=u{i},ou=Redmond,{SUFFIX}\nobjectClass: user\ncn: u{i}\nsn: u{i}\n\
             msRTCSIP-PrimaryUserAddress: sip:u{i}@contoso.com\nmsRTCSIP-Line: tel:+1425{i:07}\n\
             msRTCSIP-UserEnabled: TRUE\nphysicalDeliveryOfficeName: redmond\n\
             proxyAddresses: eum:u{i}@contoso.com;phone-context=DP1\n\n"
        );
    }
    let t = Instant::now();
    tokio::task::block_in_place(|| slapd.add(&ldif));
    let added = t.elapsed();

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ldap.secret"), READER_PASSWORD).expect("write");
    let plans = "[[tenants.contoso.dial_plans]]\nname = \"DP1\"\nphone_context = \"DP1\"\nservers = [{ uri = \"sip:um1.contoso.com\" }]\n";
    std::fs::write(dir.path().join("plans.toml"), plans).expect("write");
    let mut file = String::from(plans);
    for i in 0..users {
        let _ = write!(
            file,
            "[[tenants.contoso.users]]\nsip = \"sip:u{i}@contoso.com\"\nline = \"tel:+1425{i:07}\"\nsite = \"redmond\"\neum = \"eum:u{i}@contoso.com;phone-context=DP1\"\n"
        );
    }
    std::fs::write(dir.path().join("users.toml"), file).expect("write");
    let common = "[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n[probes]\nenabled = false\n";
    let tenant = "[[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\n";
    let ldap = format!(
        "[tenant.ldap]\nuri = \"{}\"\nbind_dn = \"{READER}\"\npassword_file = \"ldap.secret\"\nbase_dn = \"{SUFFIX}\"\n\
         page_size = 1000\npoll_interval_ms = 1000\n[tenant.ldap.attributes]\nsite = \"physicalDeliveryOfficeName\"\n",
        slapd.uri()
    );
    let (p1, p2) = (exum_bench::harness::free_port(), exum_bench::harness::free_port());
    std::fs::write(
        dir.path().join("ldap.toml"),
        format!("directory = \"plans.toml\"\n{common}[admin]\naddress = \"127.0.0.1:{p1}\"\n{tenant}{ldap}"),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("file.toml"),
        format!("directory = \"users.toml\"\n{common}[admin]\naddress = \"127.0.0.1:{p2}\"\n{tenant}"),
    )
    .expect("write");
    let (ldap_start, ldap_rss) = tokio::task::block_in_place(|| {
        exum_bench::harness::serve_until_ready(
            &dir.path().join("ldap.toml"),
            ([127, 0, 0, 1], p1).into(),
            Some(&format!("\"entries\":{users}")),
        )
    });
    let (file_start, file_rss) = tokio::task::block_in_place(|| {
        exum_bench::harness::serve_until_ready(&dir.path().join("file.toml"), ([127, 0, 0, 1], p2).into(), None)
    });

    // In this process.
    let (_, tenants) = Tenants::load(&dir.path().join("ldap.toml")).expect("loads");
    let settings = tenants.by_id("contoso").and_then(|t| t.config.ldap.clone()).expect("ldap");
    let t = Instant::now();
    let (entries, high) = exum_router::ldap::read(&settings, None).await.expect("read");
    let read_all = t.elapsed();
    assert_eq!(entries.len(), users);
    let sync = exum_router::ldap::LdapSync::default();
    exum_router::ldap::initial(&sync, &tenants).await;
    let t = Instant::now();
    let tenants = sync.overlay(tenants);
    let rebuild = t.elapsed();
    assert_eq!(tenants.by_id("contoso").map(|t| t.directory.user_count()), Some(users));
    let high = high.expect("a modifyTimestamp");
    // A poll that finds nothing new (only the entries of the last second seen, unchanged).
    let mut none = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let (found, _) = exum_router::ldap::read(&settings, Some(&high)).await.expect("poll");
        none.push((t.elapsed(), found.len()));
    }
    // One change.
    tokio::task::block_in_place(|| {
        slapd.modify(&format!(
            "dn: cn=u42,ou=Redmond,{SUFFIX}\nchangetype: modify\nadd: msExchUCVoiceMailSettings\nmsExchUCVoiceMailSettings: CsHostedVoiceMail=1\n"
        ))
    });
    let t = Instant::now();
    let (found, _) = exum_router::ldap::read(&settings, Some(&high)).await.expect("poll");
    let one_read = t.elapsed();
    let changed = found.iter().filter(|(dn, _)| dn.starts_with("cn=u42,")).count();
    let mut out = format!(
        "# A tenant's users from LDAP\n\n`ldap {users}` (OpenLDAP 2.5, mdb, on loopback; this 2-core machine).\n\n"
    );
    let _ = writeln!(out, "{users} users added with ldapadd in {:.1} s.\n", added.as_secs_f64());
    out.push_str("| source | `exum-router serve` start to /ready | RSS after start |\n|---|---:|---:|\n");
    let _ = writeln!(out, "| LDAP | {:.2} s | {ldap_rss:.0} MiB |", ldap_start.as_secs_f64());
    let _ =
        writeln!(out, "| the same users in a TOML file | {:.2} s | {file_rss:.0} MiB |\n", file_start.as_secs_f64());
    let _ = writeln!(
        out,
        "In process: full read (connect, bind, paged search of {users}, mapping) {}; the tenant rebuilt with them (validation, indexes) {}.\n",
        ms(read_all),
        ms(rebuild)
    );
    let none_ms: Vec<String> = none.iter().map(|(d, n)| format!("{} ({n} entries)", ms(*d))).collect();
    let _ = writeln!(out, "A poll with no change: {}.\n", none_ms.join(", "));
    let _ = writeln!(
        out,
        "A poll with one change (`ldapmodify` of one user): {} to read {} entries ({changed} of them the changed user); applying it rebuilds the tenant: {}.\n",
        ms(one_read),
        found.len(),
        ms(rebuild)
    );
    print!("{out}");
    std::fs::write(Path::new(env!("CARGO_MANIFEST_DIR")).join("results/ldap.md"), out).expect("write results");
}

//! A tenant's users and contacts from a real LDAP server (`exum_router_tests::slapd`:
//! OpenLDAP with the Lync and Exchange attribute names of Active Directory):
//! the example deployment's contoso read from LDAP decides every example
//! request as from its file; an `ldapmodify` moving a user to hosted voice mail
//! is routed the new way after the next poll; the server stopped, calls keep
//! routing; an entry that fails validation is refused alone, by DN; LDAPS and
//! StartTLS with a certificate the test makes; `exum-router ldap-check`.

use exum_router::control::Tenants;
use exum_router::control::directory::VoicemailSetting;
use exum_router::model::wire::Name;
use exum_router_tests::LabBuilder;
use exum_router_tests::lab::invite;
use exum_router_tests::peer::{UdpPeer, response};
use exum_router_tests::slapd::{READER, READER_PASSWORD, SUFFIX, Slapd};
use exum_router_tests::{Plane, http_get, until};

/// An LDIF user entry under `ou` with the attributes Lync and Exchange set.
fn user(cn: &str, ou: &str, attrs: &[(&str, &str)]) -> String {
    let mut out = format!("dn: cn={cn},ou={ou},{SUFFIX}\nobjectClass: user\ncn: {cn}\nsn: {cn}\n");
    for (k, v) in attrs {
        out.push_str(&format!("{k}: {v}\n"));
    }
    out.push('\n');
    out
}

/// An LDIF contact entry.
fn contact(cn: &str, attrs: &[(&str, &str)]) -> String {
    let mut out = format!("dn: cn={cn},ou=Redmond,{SUFFIX}\nobjectClass: contact\ncn: {cn}\nsn: {cn}\n");
    for (k, v) in attrs {
        out.push_str(&format!("{k}: {v}\n"));
    }
    out.push('\n');
    out
}

/// The example deployment's contoso users and contacts, as Lync and Exchange keep them in AD.
fn example_contoso() -> String {
    let sip = "msRTCSIP-PrimaryUserAddress";
    let line = "msRTCSIP-Line";
    let office = "physicalDeliveryOfficeName";
    let vm = "msExchUCVoiceMailSettings";
    let proxy = "proxyAddresses";
    let mut ldif = String::new();
    ldif += &user(
        "Alice",
        "Redmond",
        &[
            (sip, "sip:alice@contoso.com"),
            (line, "tel:+14255550100;ext=100"),
            (office, "redmond"),
            (vm, "ExchangeHostedVoiceMail=1"),
            (vm, "CsHostedVoiceMail=1"),
            ("msRTCSIP-UserEnabled", "TRUE"),
        ],
    );
    ldif += &user(
        "Bob",
        "Redmond",
        &[
            (sip, "sip:bob@contoso.com"),
            (line, "tel:+14255550101"),
            (office, "redmond"),
            (proxy, "SMTP:bob@contoso.com"),
            (proxy, "EUM:bob@contoso.com;phone-context=DP-Redmond.contoso.com"),
        ],
    );
    ldif += &user(
        "Henry",
        "Redmond",
        &[
            (sip, "sip:henry@contoso.com"),
            (line, "tel:+14255550100;ext=101"),
            (office, "redmond"),
            (proxy, "eum:henry@contoso.com;phone-context=DP-Redmond.contoso.com"),
        ],
    );
    ldif += &user("Carol", "Redmond", &[(sip, "sip:carol@contoso.com"), (office, "redmond")]);
    ldif += &user(
        "Dave",
        "Redmond",
        &[
            (sip, "sip:dave@contoso.com"),
            (line, "tel:+14255550103"),
            (office, "redmond"),
            (vm, "CsHostedVoiceMail=1"),
            ("msRTCSIP-UserPolicies", "HostedVoicemailPolicy=pilot"),
            (proxy, "eum:dave@contoso.com;phone-context=DP-Redmond.contoso.com"),
        ],
    );
    ldif += &user(
        "Erin",
        "Paris",
        &[
            (sip, "sip:erin@contoso.com"),
            (line, "tel:+33155550104"),
            (office, "paris"),
            (proxy, "eum:erin@contoso.com;phone-context=DP-Paris.contoso.com"),
        ],
    );
    ldif += &user("Frank", "Paris", &[(sip, "sip:frank@contoso.com"), (office, "paris"), (vm, "CsHostedVoiceMail=1")]);
    // Disabled for Lync: not routed (and not in the file).
    ldif += &user("Olga", "Paris", &[(sip, "sip:olga@contoso.com"), ("msRTCSIP-UserEnabled", "FALSE")]);
    ldif += &contact(
        "SA",
        &[
            (sip, "sip:sa@contoso.com"),
            (line, "tel:+14255550199"),
            ("description", "Exchange UM subscriber access"),
            (vm, "CsHostedVoiceMail=1"),
        ],
    );
    ldif += &contact(
        "AA",
        &[
            (sip, "sip:aa@contoso.com"),
            (line, "tel:+14255550198"),
            ("description", "Exchange UM auto attendant"),
            (vm, "CsHostedVoiceMail=1"),
        ],
    );
    ldif += &contact(
        "SA-Redmond",
        &[
            (sip, "sip:sa-redmond@contoso.com"),
            (line, "tel:+14255550197"),
            ("description", "subscriber access"),
            (proxy, "eum:sa-redmond@contoso.com;phone-context=DP-Redmond"),
        ],
    );
    ldif
}

fn ldap_section(uri: &str, extra: &str) -> String {
    format!(
        "[tenant.ldap]\nuri = \"{uri}\"\nbind_dn = \"{READER}\"\npassword_file = \"ldap.secret\"\n\
         base_dn = \"{SUFFIX}\"\npage_size = 3\npoll_interval_ms = 200\n{extra}\
         [tenant.ldap.attributes]\nsite = \"physicalDeliveryOfficeName\"\n"
    )
}

/// The reader's password, in the file `[tenant.ldap] password_file` names.
fn write_password(dir: &std::path::Path) {
    std::fs::write(dir.join("ldap.secret"), format!("{READER_PASSWORD}\n")).expect("write");
}

/// A copy of the example deployment in `dir` whose contoso reads its users
/// and contacts from `uri` (its dial plans and hosted policies stay in the file).
fn example_with_ldap(dir: &std::path::Path, uri: &str, extra: &str) -> std::path::PathBuf {
    let example = exum_router_tests::workspace().join("examples/deployment");
    let config = std::fs::read_to_string(example.join("router.toml")).expect("read");
    let config = config
        .replace("policy_dir = \"policies\"", "")
        .replace("utc_offset_minutes = -480\n", &format!("utc_offset_minutes = -480\n{}", ldap_section(uri, extra)));
    assert!(config.contains("[tenant.ldap]"), "the example's contoso has utc_offset_minutes = -480");
    write_password(dir);
    std::fs::write(dir.join("router.toml"), config).expect("write");
    let mut directory: toml::Table =
        toml::from_str(&std::fs::read_to_string(example.join("directory.toml")).expect("read")).expect("toml");
    let contoso = directory["tenants"]["contoso"].as_table().cloned().expect("contoso");
    let mut contoso = contoso;
    contoso.remove("users");
    contoso.remove("contacts");
    directory
        .get_mut("tenants")
        .and_then(|t| t.as_table_mut())
        .expect("tenants")
        .insert("contoso".into(), toml::Value::Table(contoso));
    std::fs::write(dir.join("directory.toml"), toml::to_string(&directory).expect("toml")).expect("write");
    dir.join("router.toml")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_s_contoso_read_from_ldap_decides_every_request_as_from_its_file() {
    let slapd = tokio::task::spawn_blocking(|| Slapd::start(None)).await.expect("join");
    slapd.add(&example_contoso());
    let dir = tempfile::tempdir().expect("tempdir");
    let config = example_with_ldap(dir.path(), &slapd.uri(), "");
    let (_, tenants) = Tenants::load(&config).expect("the configuration loads");
    let sync = exum_router::ldap::LdapSync::default();
    exum_router::ldap::initial(&sync, &tenants).await;
    let tenants = sync.overlay(tenants);
    let contoso = tenants.by_id("contoso").expect("contoso");
    assert_eq!(contoso.directory.user_count(), 7, "the seven enabled users (Olga is disabled)");
    assert_eq!(contoso.directory.contact_count(), 3);
    let from_ldap = Plane::new(tenants);
    let from_file = Plane::deployment();
    let requests = exum_router_tests::workspace().join("examples/deployment/requests");
    let mut compared = 0;
    for entry in std::fs::read_dir(&requests).expect("requests").flatten() {
        let sip = std::fs::read_to_string(entry.path()).expect("read");
        let decide = |p: &Plane| {
            let (tenant, req) = p.request(&sip);
            format!("{:?}", p.policy(&tenant).route(&tenant, &req).decision)
        };
        assert_eq!(decide(&from_ldap), decide(&from_file), "{}", entry.path().display());
        compared += 1;
    }
    assert!(compared >= 8);
    // The standard-policy cases, user by user, as the file directory has them.
    for (user, mode) in [
        ("sip:alice@contoso.com", VoicemailSetting::Hosted),
        ("sip:bob@contoso.com", VoicemailSetting::OnPremises),
        ("sip:carol@contoso.com", VoicemailSetting::None),
        ("+14255550101", VoicemailSetting::OnPremises),
    ] {
        let a = from_ldap.tenants.by_id("contoso").and_then(|t| t.directory.user(user).cloned());
        let b = from_file.tenants.by_id("contoso").and_then(|t| t.directory.user(user).cloned());
        assert_eq!(a.as_ref().map(|u| u.voicemail), Some(mode), "{user}");
        assert_eq!(a, b, "{user}: the same user from LDAP and from the file");
    }
}

struct Peers {
    slapd: Slapd,
    plan: UdpPeer,
    hosted: UdpPeer,
    caller: UdpPeer,
}

type Lab = exum_router_tests::Lab<Peers>;

async fn lab() -> Lab {
    lab_with("").await
}

/// [`lab`] with `top` at the head of the router's configuration.
async fn lab_with(top: &str) -> Lab {
    let slapd = tokio::task::spawn_blocking(|| Slapd::start(None)).await.expect("join");
    let sip = "msRTCSIP-PrimaryUserAddress";
    slapd.add(&user(
        "Bob",
        "Redmond",
        &[(sip, "sip:bob@contoso.com"), ("proxyAddresses", "eum:bob@contoso.com;phone-context=DP1")],
    ));
    let (plan, hosted) = (UdpPeer::bind().await, UdpPeer::bind().await);
    let builder = LabBuilder::new();
    write_password(builder.path());
    let config = format!(
        "{top}directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n\
             [probes]\nenabled = false\n[admin]\naddress = \"127.0.0.1:0\"\n\
             [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\nedge = \"sip:{}\"\n{}",
        hosted.addr,
        ldap_section(&slapd.uri(), "")
    );
    let directory = format!(
        "[[tenants.contoso.dial_plans]]\nname = \"DP1\"\nphone_context = \"DP1\"\nservers = [{{ uri = \"sip:{}\" }}]\n\
             [[tenants.contoso.hosted_voicemail_policies]]\nscope = \"global\"\ndestination = \"um.example\"\n",
        plan.addr
    );
    let caller = UdpPeer::bind().await;
    builder.config(&config).directory(&directory).start(Peers { slapd, plan, hosted, caller }).await
}

/// What the LDAP tests do with their router.
trait Calling {
    async fn call_reaches(&self, user: &str, at: &UdpPeer, call_id: &str);
    fn mode(&self, user: &str) -> Option<VoicemailSetting>;
}

impl Calling for Lab {
    async fn call_reaches(&self, user: &str, at: &UdpPeer, call_id: &str) {
        let ruri = format!("sip:{user};opaque=app:voicemail");
        self.caller.send(self.router, &invite(self.caller.addr, &ruri, call_id)).await;
        loop {
            let (inv, from) = at.expect_request("INVITE").await;
            if inv.first(Name::CallId) == Some(call_id) {
                at.send(from, &response(&inv, 200, "um", "")).await;
                break;
            }
        }
        let ok = self.caller.final_response().await;
        assert_eq!((ok.status(), ok.first(Name::CallId)), (Some(200), Some(call_id)));
    }

    fn mode(&self, user: &str) -> Option<VoicemailSetting> {
        self.server.proxy.tenants().by_id("contoso").and_then(|t| t.directory.user(user).map(|u| u.voicemail))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_with_ldapmodify_is_routed_after_the_next_poll_and_a_stopped_server_changes_nothing() {
    let mut lab = lab().await;
    lab.call_reaches("bob@contoso.com", &lab.plan, "ldap-0").await;
    // Bob moves to hosted voice mail in AD.
    lab.slapd.modify(&format!(
        "dn: cn=Bob,ou=Redmond,{SUFFIX}\nchangetype: modify\nadd: msExchUCVoiceMailSettings\nmsExchUCVoiceMailSettings: CsHostedVoiceMail=1\n"
    ));
    until("bob hosted after a poll", || lab.mode("sip:bob@contoso.com") == Some(VoicemailSetting::Hosted)).await;
    lab.call_reaches("bob@contoso.com", &lab.hosted, "ldap-1").await;
    // An entry that fails validation is refused alone, by its DN; the others serve.
    lab.slapd.add(&user("Mallory", "Paris", &[("msRTCSIP-PrimaryUserAddress", "sip:mallory@fabrikam.com")]));
    lab.slapd.add(&user(
        "Zoe",
        "Paris",
        &[
            ("msRTCSIP-PrimaryUserAddress", "sip:zoe@contoso.com"),
            ("proxyAddresses", "eum:zoe@contoso.com;phone-context=DP1"),
        ],
    ));
    let sync = lab.server.ldap().expect("ldap").clone();
    until("zoe added", || lab.mode("sip:zoe@contoso.com") == Some(VoicemailSetting::OnPremises)).await;
    let why = sync.refused("contoso", &format!("cn=Mallory,ou=Paris,{SUFFIX}")).expect("mallory refused");
    assert!(why.contains("not in the tenant's domains"), "{why}");
    lab.call_reaches("zoe@contoso.com", &lab.plan, "ldap-2").await;
    let admin = lab.server.admin_addr().expect("admin");
    let body = http_get(admin, "/directory").await;
    assert!(body.contains("cn=Mallory,ou=Paris"), "{body}");
    // The server stops: calls keep routing on the last entries, and it says so.
    tokio::task::block_in_place(|| lab.slapd.stop());
    until("stale", || !sync.connected("contoso")).await;
    lab.call_reaches("bob@contoso.com", &lab.hosted, "ldap-3").await;
    let metrics = http_get(admin, "/metrics").await;
    assert!(metrics.contains("exum_ldap_refused_entries 1"), "{metrics}");
    // Back: read whole again.
    tokio::task::block_in_place(|| lab.slapd.restart());
    until("connected again", || sync.connected("contoso")).await;
    lab.call_reaches("zoe@contoso.com", &lab.plan, "ldap-4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_whose_server_is_down_at_start_serves_the_entries_of_its_snapshot() {
    let mut lab = lab_with("policy_cache = \"cache\"\n").await;
    let snapshot = lab.path().join("cache/ldap.snapshot");
    until("the LDAP snapshot written", || snapshot.exists()).await;
    // Bob moves to hosted voice mail; the snapshot follows.
    lab.slapd.modify(&format!(
        "dn: cn=Bob,ou=Redmond,{SUFFIX}\nchangetype: modify\nadd: msExchUCVoiceMailSettings\nmsExchUCVoiceMailSettings: CsHostedVoiceMail=1\n"
    ));
    until("bob hosted after a poll", || lab.mode("sip:bob@contoso.com") == Some(VoicemailSetting::Hosted)).await;
    let hosted_in_snapshot = || {
        exum_router::ldap::snapshot::read(&snapshot).is_ok_and(|s| {
            s.tenants["contoso"]
                .entries
                .iter()
                .any(|(_, m)| matches!(m, Ok(exum_router::ldap::mapping::Mapped::User(u)) if u.hosted_voicemail))
        })
    };
    until("the snapshot has bob hosted", hosted_in_snapshot).await;
    // The router and the directory server stop; the router starts again.
    lab.server.stop();
    tokio::task::block_in_place(|| lab.slapd.stop());
    let config = lab.path().join("router.toml");
    let server = exum_router::server::Server::start(&config).await.expect("the router starts without its LDAP server");
    let contoso = server.proxy.tenants().by_id("contoso").cloned().expect("contoso");
    let bob = contoso.directory.user("sip:bob@contoso.com").map(|u| u.voicemail);
    assert_eq!(bob, Some(VoicemailSetting::Hosted), "bob served from the snapshot");
    let status = server.ldap().expect("ldap").json();
    let status = &status[0];
    assert_eq!(
        (status["connected"].as_bool(), status["stale"].as_bool(), status["from_snapshot"].as_bool()),
        (Some(false), Some(true), Some(true)),
        "{status}"
    );
    assert_eq!(status["entries"].as_u64(), Some(1), "{status}");
    // A call to bob routes the way the snapshot says.
    let router = server.local_addr(exum_router::model::Transport::Udp).expect("udp");
    lab.caller.send(router, &invite(lab.caller.addr, "sip:bob@contoso.com;opaque=app:voicemail", "snap-0")).await;
    let (inv, from) = lab.hosted.expect_request("INVITE").await;
    lab.hosted.send(from, &response(&inv, 200, "um", "")).await;
    assert_eq!(lab.caller.final_response().await.status(), Some(200));
    // The server back: read whole, no longer from the snapshot.
    tokio::task::block_in_place(|| lab.slapd.restart());
    let sync = server.ldap().expect("ldap").clone();
    until("connected again", || sync.connected("contoso")).await;
    assert_eq!(sync.json()[0]["from_snapshot"].as_bool(), Some(false));
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldaps_and_starttls_with_a_certificate_the_test_makes() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "directory CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    leaf.subject_alt_names.push(SanType::IpAddress([127, 0, 0, 1].into()));
    let key = KeyPair::generate().expect("key");
    let cert = leaf.signed_by(&key, &ca).expect("signed");
    let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
    let slapd = tokio::task::spawn_blocking(move || Slapd::start(Some((&cert_pem, &key_pem)))).await.expect("join");
    slapd.add(&example_contoso());
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write");
    for (uri, extra) in
        [(slapd.tls_uri().expect("ldaps"), "ca = \"ca.pem\"\n"), (slapd.uri(), "starttls = true\nca = \"ca.pem\"\n")]
    {
        let config = example_with_ldap(dir.path(), &uri, extra);
        let (_, tenants) = Tenants::load(&config).expect("loads");
        let sync = exum_router::ldap::LdapSync::default();
        exum_router::ldap::initial(&sync, &tenants).await;
        assert!(sync.connected("contoso"), "{uri} {extra}");
        let tenants = sync.overlay(tenants);
        assert_eq!(tenants.by_id("contoso").map(|t| t.directory.user_count()), Some(7), "{uri}");
    }
    // A CA that did not sign the server's certificate: not connected.
    let mut other = CertificateParams::new(Vec::<String>::new()).expect("params");
    other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let other = CertifiedIssuer::self_signed(other, KeyPair::generate().expect("key")).expect("CA");
    std::fs::write(dir.path().join("ca.pem"), other.pem()).expect("write");
    let config =
        example_with_ldap(dir.path(), &slapd.tls_uri().expect("ldaps"), "ca = \"ca.pem\"\ntimeout_ms = 2000\n");
    let (_, tenants) = Tenants::load(&config).expect("loads");
    let sync = exum_router::ldap::LdapSync::default();
    exum_router::ldap::initial(&sync, &tenants).await;
    assert!(!sync.connected("contoso"), "a certificate from another CA is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_check_prints_how_each_entry_maps() {
    let slapd = tokio::task::spawn_blocking(|| Slapd::start(None)).await.expect("join");
    slapd.add(&example_contoso());
    slapd.add(&user("Mallory", "Paris", &[("msRTCSIP-PrimaryUserAddress", "sip:mallory@fabrikam.com")]));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = example_with_ldap(dir.path(), &slapd.uri(), "");
    let out = exum_router::ldap::check(&config).await.expect("ldap-check");
    assert!(out.contains("tenant contoso"), "{out}");
    assert!(out.contains("user sip:bob@contoso.com, line tel:+14255550101, site redmond: on-premises, dial plan DP-Redmond.contoso.com"), "{out}");
    assert!(out.contains("hosted voice mail (policy pilot)"), "{out}");
    assert!(out.contains("disabled for Lync"), "{out}");
    assert!(out.contains("AutoAttendant"), "{out}");
    assert!(out.contains("PROBLEM") && out.contains("mallory@fabrikam.com"), "{out}");
    assert!(!out.contains(READER_PASSWORD), "the password is never printed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_s_eum_proxy_addresses_route_by_dial_plan_and_find_users_by_extension_and_number() {
    let slapd = tokio::task::spawn_blocking(|| Slapd::start(None)).await.expect("join");
    let sip = "msRTCSIP-PrimaryUserAddress";
    let dp = "phone-context=DP-Redmond.contoso.com";
    let mut ldif = example_contoso();
    // As Exchange writes them for a user of a SIP URI dial plan: one EUM
    // address with the SIP address, one with the extension.
    ldif += &user(
        "Anna",
        "Redmond",
        &[
            (sip, "sip:anna@contoso.com"),
            ("msRTCSIP-Line", "tel:+14255550141"),
            ("proxyAddresses", "SMTP:anna@contoso.com"),
            ("proxyAddresses", &format!("EUM:anna@contoso.com;{dp}")),
            ("proxyAddresses", &format!("EUM:4141;{dp}")),
        ],
    );
    // Only an extension; only an E.164 number.
    ldif += &user("Bram", "Redmond", &[(sip, "sip:bram@contoso.com"), ("proxyAddresses", &format!("EUM:4142;{dp}"))]);
    ldif += &user(
        "Cees",
        "Redmond",
        &[(sip, "sip:cees@contoso.com"), ("proxyAddresses", &format!("eum:+14255550143;{dp}"))],
    );
    slapd.add(&ldif);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = example_with_ldap(dir.path(), &slapd.uri(), "");
    let (_, tenants) = Tenants::load(&config).expect("the configuration loads");
    let sync = exum_router::ldap::LdapSync::default();
    exum_router::ldap::initial(&sync, &tenants).await;
    let plane = Plane::new(sync.overlay(tenants));
    let contoso = plane.tenants.by_id("contoso").expect("contoso").clone();
    let found = |address: &str| contoso.directory.user(address).map(|u| u.sip.clone());
    let dialled = |ext: &str| format!("sip:{ext};{dp}@contoso.com;user=phone");
    assert_eq!(found("sip:anna@contoso.com").as_deref(), Some("sip:anna@contoso.com"));
    assert_eq!(found("tel:+14255550141").as_deref(), Some("sip:anna@contoso.com"), "by line");
    assert_eq!(found(&dialled("4141")).as_deref(), Some("sip:anna@contoso.com"), "by her EUM extension");
    assert_eq!(found(&dialled("4142")).as_deref(), Some("sip:bram@contoso.com"));
    assert_eq!(found("tel:+14255550143").as_deref(), Some("sip:cees@contoso.com"), "by his EUM number");
    // Each is routed by the dial plan its EUM addresses name.
    for (who, ruri) in [
        ("anna", "sip:anna@contoso.com;opaque=app:voicemail".to_owned()),
        ("anna by extension", format!("sip:4141;{dp}@contoso.com;user=phone;opaque=app:voicemail")),
        ("bram", "sip:bram@contoso.com;opaque=app:voicemail".to_owned()),
        ("cees", "sip:cees@contoso.com;opaque=app:voicemail".to_owned()),
    ] {
        let sip = exum_router_tests::invite(&ruri, "sip:zoe@fabrikam.com");
        let (tenant, req) = plane.request(&sip);
        let decision = format!("{:?}", plane.policy(&tenant).route(&tenant, &req).decision);
        assert!(decision.contains("um1.redmond.contoso.com"), "{who}: {decision}");
    }
}

//! `mimo certs dev`: a local CA and two certificates it signs, one for the services (server
//! and client auth: services also call each other) and one for clients, to try mutual TLS.

use crate::cli::CertsDevArgs;
use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::path::Path;
use std::process::ExitCode;

/// The files `mimo certs dev` writes, in the order it writes them.
const FILES: [&str; 6] = [
    "ca.pem",
    "ca-key.pem",
    "server.pem",
    "server-key.pem",
    "client.pem",
    "client-key.pem",
];

/// Writes the CA, the services' and the clients' certificates and keys into `args.out`.
pub fn dev(args: &CertsDevArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot make the folder {}", args.out.display()))?;
    for name in FILES {
        let path = args.out.join(name);
        if path.exists() {
            anyhow::bail!(
                "{} exists; remove it or choose another --out (nothing was written)",
                path.display()
            );
        }
    }
    let days = time::Duration::days(i64::from(args.days.max(1)));
    let now = time::OffsetDateTime::now_utc();
    let validity = |params: &mut CertificateParams| {
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + days;
    };

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = name("Mimo development CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca);
    let ca_cert = ca.self_signed(&ca_key)?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca, ca_key);

    let mut hosts = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    hosts.extend(args.hosts.iter().map(|h| h.trim().to_string()));
    hosts.retain(|h| !h.is_empty());
    hosts.dedup();
    let mut server = CertificateParams::default();
    server.distinguished_name = name("mimo services");
    server.subject_alt_names = hosts
        .iter()
        .map(|host| match host.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => host
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .with_context(|| format!("--host {host:?} is not a host name or IP address")),
        })
        .collect::<anyhow::Result<_>>()?;
    server.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut server);
    let server_key = KeyPair::generate()?;
    let server_cert = server.signed_by(&server_key, &issuer)?;

    let mut client = CertificateParams::default();
    client.distinguished_name = name("mimo client");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut client);
    let client_key = KeyPair::generate()?;
    let client_cert = client.signed_by(&client_key, &issuer)?;

    let contents = [
        ca_cert.pem(),
        ca_key_pem,
        server_cert.pem(),
        server_key.serialize_pem(),
        client_cert.pem(),
        client_key.serialize_pem(),
    ];
    for (file, content) in FILES.iter().zip(contents) {
        write_private(&args.out.join(file), &content)?;
    }
    let out = args.out.display();
    crate::output::line(format_args!(
        "wrote {out}/{{{}}}, valid {} days for {}\n\
         services: --tls-cert {out}/server.pem --tls-key {out}/server-key.pem --tls-ca {out}/ca.pem\n\
         clients:  --tls-cert {out}/client.pem --tls-key {out}/client-key.pem --tls-ca {out}/ca.pem",
        FILES.join(","),
        args.days.max(1),
        hosts.join(", ")
    ));
    Ok(ExitCode::SUCCESS)
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// Writes `content` to a new file readable by its owner only (keys are secrets; the
/// certificates do not need it, but one rule is simpler).
fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(content.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

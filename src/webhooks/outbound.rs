//! Requests to provider APIs at URLs that come from outside the installation's configuration: a Twilio
//! `MediaUrl{n}` (in a webhook anyone holding the integration's auth token can sign), the URL a media id
//! answers, an integration's `api_url` (set by an account administrator). Fetched verbatim, such a URL reaches
//! whatever the server reaches — ferry's own `/metrics`, Redis, PostgreSQL, the cloud metadata address — with
//! the integration's credentials, and the answer is read back as an attachment. So:
//!
//! - a URL is requested only on a provider's own hosts (https, default port) or under a base URL the
//!   installation administrator allowed (`FERRY_MEDIA_ALLOWED_URLS`, and `FERRY_EVOLUTION_API_URL`);
//! - every address a name resolves to is checked when the connection is made, so a name cannot pass the check
//!   and then resolve elsewhere: provider hosts must be on public addresses; an allowed base URL may be on
//!   loopback or the LAN (the administrator chose it), never on link-local or metadata addresses;
//! - redirects are followed by hand, each hop checked again, at most five;
//! - credentials go only to the provider's own API hosts (or an allowed base URL), decided hop by hop;
//! - answers are read up to a cap (`FERRY_MEDIA_MAX_BYTES` for files).

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;
use url::{Host, Url};

use crate::config::Config;

const MAX_REDIRECTS: usize = 5;

/// The providers' API and media hosts (a pattern and a path prefix), reached over https on the default port
/// only. `*.example.com` matches any name under `example.com`, not `example.com` itself.
const PROVIDER_HOSTS: &[(&str, &str)] = &[
    // Twilio: `MediaUrl{n}` is on api.twilio.com, which redirects to a short-lived URL on its media CDN.
    ("api.twilio.com", "/"),
    ("*.twilio.com", "/"),
    ("*.twiliocdn.com", "/"),
    // Media stored before an account enforced HTTP auth on media redirects to Twilio's own bucket, path-style.
    ("s3-external-1.amazonaws.com", "/media.twiliocdn.com/"),
    // Meta: the Graph API answers a media id with a lookaside URL, which may hand over to its CDNs.
    ("graph.facebook.com", "/"),
    ("lookaside.fbsbx.com", "/"),
    ("*.fbsbx.com", "/"),
    ("*.fbcdn.net", "/"),
    ("*.whatsapp.net", "/"),
    // 360dialog serves the media of its Cloud API numbers itself (`waba-v2`; `waba` for On-Premise).
    ("waba-v2.360dialog.io", "/"),
    ("*.360dialog.io", "/"),
];

/// A base URL the installation administrator allows besides the providers' hosts (`FERRY_MEDIA_ALLOWED_URLS`):
/// a URL is under it when its scheme, host and port are the same and its path starts with the base's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedUrl(Url);

impl FromStr for AllowedUrl {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let url = Url::parse(raw).map_err(|e| format!("{raw}: not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(format!("{raw}: write an http:// or https:// base URL"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{raw}: a base URL carries no credentials"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "{raw}: a base URL has no query or fragment, only a path"
            ));
        }
        if let Some(ip) = literal_ip(&url) {
            let kind = classify(ip);
            if !kind.reachable_when_allowed() {
                return Err(format!(
                    "{raw}: {ip} is {}, never reachable",
                    kind.describe()
                ));
            }
        }
        Ok(Self(url))
    }
}

impl fmt::Display for AllowedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str().trim_end_matches('/'))
    }
}

/// `FERRY_MEDIA_ALLOWED_URLS`: comma-separated base URLs; blank entries (an empty variable) are none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedUrls(pub Vec<AllowedUrl>);

impl FromStr for AllowedUrls {
    type Err = String;

    fn from_str(list: &str) -> Result<Self, String> {
        list.split(',')
            .filter(|url| !url.trim().is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl fmt::Display for AllowedUrls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&urls.join(","))
    }
}

impl AllowedUrl {
    fn covers(&self, url: &Url) -> bool {
        let base = &self.0;
        let prefix = format!("{}/", base.path().trim_end_matches('/'));
        url.scheme() == base.scheme()
            && url.host() == base.host()
            && url.port_or_known_default() == base.port_or_known_default()
            && (url.path().starts_with(&prefix) || format!("{}/", url.path()) == prefix)
    }
}

/// What an address is, for deciding whether ferry may connect to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    Public,
    Loopback,
    /// RFC 1918, IPv6 unique local (fc00::/7), the deprecated site-local fec0::/10, benchmarking 198.18/15.
    Private,
    /// Carrier-grade NAT, 100.64.0.0/10.
    Shared,
    /// 169.254/16, fe80::/10.
    LinkLocal,
    /// Cloud instance metadata: 169.254.169.254, fd00:ec2::254, 100.100.100.200, 192.0.0.192.
    Metadata,
    Unspecified,
    Multicast,
    /// Broadcast, 0/8, 240/4, documentation and protocol-assignment ranges, discard, Teredo.
    Reserved,
}

impl AddressKind {
    /// On the administrator's own network: reachable through an allowed base URL (a self-hosted Evolution
    /// server), never through a provider host or an unlisted URL.
    fn reachable_when_allowed(self) -> bool {
        matches!(
            self,
            AddressKind::Public
                | AddressKind::Loopback
                | AddressKind::Private
                | AddressKind::Shared
        )
    }

    fn describe(self) -> &'static str {
        match self {
            AddressKind::Public => "a public address",
            AddressKind::Loopback => "a loopback address",
            AddressKind::Private => "a private address",
            AddressKind::Shared => "a carrier-grade NAT address",
            AddressKind::LinkLocal => "a link-local address",
            AddressKind::Metadata => "a cloud metadata address",
            AddressKind::Unspecified => "the unspecified address",
            AddressKind::Multicast => "a multicast address",
            AddressKind::Reserved => "a reserved address",
        }
    }
}

pub fn classify(ip: IpAddr) -> AddressKind {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressKind {
    let [a, b, c, d] = ip.octets();
    match (a, b, c, d) {
        (169, 254, 169, 254) | (100, 100, 100, 200) | (192, 0, 0, 192) => AddressKind::Metadata,
        (0, 0, 0, 0) => AddressKind::Unspecified,
        (255, 255, 255, 255) | (0, ..) | (240..=255, ..) => AddressKind::Reserved,
        (127, ..) => AddressKind::Loopback,
        (10, ..) | (172, 16..=31, ..) | (192, 168, ..) | (198, 18..=19, ..) => AddressKind::Private,
        (100, 64..=127, ..) => AddressKind::Shared,
        (169, 254, ..) => AddressKind::LinkLocal,
        (224..=239, ..) => AddressKind::Multicast,
        (192, 0, 0 | 2, _) | (198, 51, 100, _) | (203, 0, 113, _) => AddressKind::Reserved,
        _ => AddressKind::Public,
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressKind {
    // An IPv4 address inside IPv6 (mapped, compatible, NAT64, 6to4) is what it embeds.
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    let s = ip.segments();
    if ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254) {
        return AddressKind::Metadata;
    }
    match s[0] {
        _ if ip.is_unspecified() => AddressKind::Unspecified,
        _ if ip.is_loopback() => AddressKind::Loopback,
        0xfe80..=0xfebf => AddressKind::LinkLocal,
        0xfec0..=0xfeff | 0xfc00..=0xfdff => AddressKind::Private,
        0xff00..=0xffff => AddressKind::Multicast,
        // Documentation 2001:db8::/32, Teredo 2001::/32 (an obfuscated IPv4 inside), discard 100::/64.
        0x2001 if s[1] == 0x0db8 || s[1] == 0 => AddressKind::Reserved,
        0x0100 if s[1..4] == [0, 0, 0] => AddressKind::Reserved,
        _ => AddressKind::Public,
    }
}

fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    match s {
        // IPv4-compatible (deprecated), not :: or ::1.
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 => Some(low(hi, lo)),
        // NAT64 well-known prefix 64:ff9b::/96.
        [0x0064, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(low(hi, lo)),
        // 6to4 2002::/16.
        [0x2002, hi, lo, ..] => Some(low(hi, lo)),
        _ => None,
    }
}

fn literal_ip(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        Host::Domain(_) => None,
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .is_some_and(|name| name.len() > 1 && name.ends_with('.')),
        None => host == pattern,
    }
}

/// A provider host (https, default port) under one of `patterns`.
fn on_provider_host(url: &Url, patterns: &[(&str, &str)]) -> bool {
    let Some(Host::Domain(host)) = url.host() else {
        return false;
    };
    url.scheme() == "https"
        && url.port().is_none()
        && patterns
            .iter()
            .any(|(pattern, path)| host_matches(pattern, host) && url.path().starts_with(path))
}

/// An integration's credential and the only hosts it may be sent to.
pub enum Credential {
    /// Twilio's account SID and auth token, as basic auth: only to api.twilio.com (never its CDN).
    TwilioBasic { sid: String, token: String },
    /// A Cloud API access token: only to the Graph API and Meta's lookaside host.
    MetaBearer(String),
    /// 360dialog's `D360-API-KEY`: only to 360dialog's hosts.
    Dialog360Key(String),
    /// An Evolution `apikey`: Evolution is self-hosted, so only to an allowed base URL.
    EvolutionKey(String),
}

impl Credential {
    fn own_hosts(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            Credential::TwilioBasic { .. } => &[("api.twilio.com", "/")],
            Credential::MetaBearer(_) => {
                &[("graph.facebook.com", "/"), ("lookaside.fbsbx.com", "/")]
            }
            Credential::Dialog360Key(_) => &[("*.360dialog.io", "/")],
            Credential::EvolutionKey(_) => &[],
        }
    }

    fn attach(&self, request: RequestBuilder) -> RequestBuilder {
        match self {
            Credential::TwilioBasic { sid, token } => request.basic_auth(sid, Some(token)),
            Credential::MetaBearer(token) => request.bearer_auth(token),
            Credential::Dialog360Key(key) => request.header("D360-API-KEY", key),
            Credential::EvolutionKey(key) => request.header("apikey", key),
        }
    }
}

/// One request: where, what, with which credential.
pub struct Call<'a> {
    method: Method,
    url: String,
    json: Option<&'a Value>,
    credential: Option<&'a Credential>,
}

impl<'a> Call<'a> {
    pub fn get(url: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            url: url.into(),
            json: None,
            credential: None,
        }
    }

    pub fn post_json(url: impl Into<String>, body: &'a Value) -> Self {
        Self {
            method: Method::POST,
            json: Some(body),
            ..Self::get(url)
        }
    }

    pub fn with(self, credential: Option<&'a Credential>) -> Self {
        Self { credential, ..self }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// Not a URL ferry may reach (its host, an address it resolved to, a redirect): no attempt can succeed, and
    /// none was made.
    #[error("URL refused: {0}")]
    Refused(String),
    /// An answer longer than its cap (in bytes).
    #[error("the answer is larger than {0} bytes")]
    TooLarge(u64),
    /// The network or the server failed: worth another attempt.
    #[error("{0}")]
    Failed(String),
}

/// An address the resolver refused, found again in the chain of the connection error.
#[derive(Debug)]
struct AddressRefused(String);

impl fmt::Display for AddressRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AddressRefused {}

/// Resolves with the system resolver and refuses the name when any address it has is out of bounds. The check
/// sits here, where the connection gets its addresses, so nothing can change between check and connect.
struct GuardedResolver {
    /// Host names of allowed base URLs: these may be on loopback and private networks.
    internal_names: HashSet<String>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let internal = self.internal_names.contains(&host);
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| !admitted(a.ip(), internal)) {
                let kind = classify(bad.ip());
                let hint = if internal || !kind.reachable_when_allowed() {
                    ""
                } else {
                    " (allow a server on your own network with FERRY_MEDIA_ALLOWED_URLS)"
                };
                let reason = format!("{host} resolves to {}, {}{hint}", bad.ip(), kind.describe());
                return Err(AddressRefused(reason).into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

fn admitted(ip: IpAddr, internal: bool) -> bool {
    let kind = classify(ip);
    kind == AddressKind::Public || (internal && kind.reachable_when_allowed())
}

/// The client and rules of every request to a provider; one per process (`Ferry::outbound`).
pub struct Outbound {
    allowed: Vec<AllowedUrl>,
    max_bytes: u64,
    client: reqwest::Client,
}

impl Outbound {
    pub fn new(config: &Config) -> Self {
        let mut allowed = config.media_allowed_urls.0.clone();
        // The installation's own Evolution server is configuration too.
        if let Some(url) = &config.evolution_api_url {
            match url.parse::<AllowedUrl>() {
                Ok(url) => allowed.push(url),
                Err(e) => {
                    tracing::warn!(error = %e, "FERRY_EVOLUTION_API_URL is not allowed as a base URL")
                }
            }
        }
        let internal_names = allowed
            .iter()
            .filter_map(|a| match a.0.host() {
                Some(Host::Domain(name)) => Some(name.to_ascii_lowercase()),
                _ => None,
            })
            .collect();
        crate::install_tls();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10))
            // Followed by hand, each hop checked and its credential decided again.
            .redirect(reqwest::redirect::Policy::none())
            // Through a proxy the addresses would be the proxy's to resolve, out of the resolver's sight.
            .no_proxy()
            .dns_resolver(GuardedResolver { internal_names })
            .build()
            .expect("HTTP client");
        Self {
            allowed,
            max_bytes: config.media_max_bytes,
            client,
        }
    }

    /// The largest file a download may be (`FERRY_MEDIA_MAX_BYTES`).
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Sends `call`, following up to five redirects, and answers the last response whatever its status.
    pub async fn send(&self, call: Call<'_>) -> Result<reqwest::Response, OutboundError> {
        let mut url = Url::parse(&call.url)
            .map_err(|e| refused("url", format!("{} is not a URL ({e})", call.url)))?;
        let first = url.clone();
        let (mut method, mut json) = (call.method, call.json);
        for hop in 0..=MAX_REDIRECTS {
            if let Err(reason) = self.admit(&url) {
                let reason = match hop {
                    0 => reason,
                    _ => format!("redirected to {}: {reason}", origin(&url)),
                };
                return Err(refused("host", reason));
            }
            let mut request = self.client.request(method.clone(), url.clone());
            if let Some(body) = json {
                request = request.json(body);
            }
            if let Some(credential) = call.credential
                && self.may_carry(credential, &url, &first)
            {
                request = credential.attach(request);
            }
            let response = request.send().await.map_err(connection_error)?;
            let status = response.status();
            if !matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
                return Ok(response);
            }
            let Some(location) = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
            else {
                return Ok(response);
            };
            let next = url.join(location).map_err(|e| {
                OutboundError::Failed(format!("unusable redirect to {location}: {e}"))
            })?;
            if status == StatusCode::SEE_OTHER || (method == Method::POST && status.as_u16() < 303)
            {
                (method, json) = (Method::GET, None);
            }
            url = next;
        }
        Err(refused(
            "redirects",
            format!("more than {MAX_REDIRECTS} redirects"),
        ))
    }

    /// The body of `response`, refused past `limit` bytes: by its `Content-Length` before reading, and by
    /// counting as it streams in (a server may send none, or lie).
    pub async fn read(
        &self,
        mut response: reqwest::Response,
        limit: u64,
    ) -> Result<Vec<u8>, OutboundError> {
        let too_large = || {
            crate::metrics::outbound_refused("too_large");
            OutboundError::TooLarge(limit)
        };
        if response
            .content_length()
            .is_some_and(|length| length > limit)
        {
            return Err(too_large());
        }
        let mut body = Vec::with_capacity(response.content_length().unwrap_or(0) as usize);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| OutboundError::Failed(format!("download cut short: {e}")))?
        {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Whether ferry may request `url` at all (the addresses are checked when connecting).
    fn admit(&self, url: &Url) -> Result<(), String> {
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{} carries credentials in the URL", origin(url)));
        }
        if on_provider_host(url, PROVIDER_HOSTS) {
            return Ok(());
        }
        if self.allowed.iter().any(|a| a.covers(url)) {
            // A name is checked by the resolver; an address is connected to as it is, so it is checked here.
            return match literal_ip(url).map(classify) {
                Some(kind) if !kind.reachable_when_allowed() => Err(format!(
                    "{} is {}, never reachable",
                    origin(url),
                    kind.describe()
                )),
                _ => Ok(()),
            };
        }
        Err(format!(
            "{} is not a provider host nor under an allowed base URL (allow it with FERRY_MEDIA_ALLOWED_URLS)",
            origin(url)
        ))
    }

    /// Whether `credential` goes with the request to `url`, a hop of a call that started at `first`: to the
    /// provider's own hosts, or to an allowed base URL on the origin the call started at (a redirect from one
    /// allowed server to another leaves it behind, as it leaves behind a provider's CDN).
    fn may_carry(&self, credential: &Credential, url: &Url, first: &Url) -> bool {
        on_provider_host(url, credential.own_hosts())
            || (url.origin() == first.origin() && self.allowed.iter().any(|a| a.covers(url)))
    }
}

fn refused(reason: &'static str, message: String) -> OutboundError {
    crate::metrics::outbound_refused(reason);
    OutboundError::Refused(message)
}

/// A connection failure, or the resolver's refusal of an address found in its chain of causes.
fn connection_error(e: reqwest::Error) -> OutboundError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(cause) = source {
        if let Some(AddressRefused(reason)) = cause.downcast_ref::<AddressRefused>() {
            return refused("address", reason.clone());
        }
        source = cause.source();
    }
    OutboundError::Failed(format!("request failed: {e}"))
}

/// `scheme://host:port` of `url`: what a refusal names (never the path or query, which may hold a token).
fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(ip: &str) -> AddressKind {
        classify(ip.parse().unwrap())
    }

    #[test]
    fn addresses_on_own_networks_and_metadata_are_refused() {
        for (ip, expected) in [
            ("127.0.0.1", AddressKind::Loopback),
            ("10.1.2.3", AddressKind::Private),
            ("172.16.0.1", AddressKind::Private),
            ("172.31.255.255", AddressKind::Private),
            ("192.168.1.1", AddressKind::Private),
            ("169.254.169.254", AddressKind::Metadata),
            ("169.254.10.1", AddressKind::LinkLocal),
            ("100.64.0.1", AddressKind::Shared),
            ("0.0.0.0", AddressKind::Unspecified),
            ("255.255.255.255", AddressKind::Reserved),
            ("224.0.0.1", AddressKind::Multicast),
            ("::1", AddressKind::Loopback),
            ("::", AddressKind::Unspecified),
            ("fe80::1", AddressKind::LinkLocal),
            ("fd00:ec2::254", AddressKind::Metadata),
            ("fd12:3456::1", AddressKind::Private),
            ("::ffff:127.0.0.1", AddressKind::Loopback),
            ("::ffff:169.254.169.254", AddressKind::Metadata),
            ("64:ff9b::a00:1", AddressKind::Private),
            ("2002:7f00:1::", AddressKind::Loopback),
        ] {
            assert_eq!(kind(ip), expected, "{ip}");
            assert!(!admitted(ip.parse().unwrap(), false), "{ip} admitted");
        }
        for ip in [
            "8.8.8.8",
            "2606:4700::1111",
            "172.32.0.1",
            "100.128.0.1",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(kind(ip), AddressKind::Public, "{ip}");
            assert!(admitted(ip.parse().unwrap(), false), "{ip} refused");
        }
    }

    #[test]
    fn allowed_base_urls_reach_the_lan_but_never_metadata() {
        for ip in ["127.0.0.1", "10.0.0.5", "fd12::1", "100.64.0.1"] {
            assert!(admitted(ip.parse().unwrap(), true), "{ip}");
        }
        for ip in [
            "169.254.169.254",
            "fd00:ec2::254",
            "fe80::1",
            "0.0.0.0",
            "100.100.100.200",
        ] {
            assert!(!admitted(ip.parse().unwrap(), true), "{ip}");
        }
        assert!(
            "http://169.254.169.254/latest"
                .parse::<AllowedUrl>()
                .is_err()
        );
        assert!(
            "http://user:pw@evolution:8080"
                .parse::<AllowedUrl>()
                .is_err()
        );
        assert!("ftp://evolution".parse::<AllowedUrl>().is_err());
        assert!("http://10.0.0.5:8080".parse::<AllowedUrl>().is_ok());
        let list: AllowedUrls = " http://a:1/x/ , https://b ,".parse().unwrap();
        assert_eq!(list.to_string(), "http://a:1/x,https://b");
        assert_eq!("".parse::<AllowedUrls>().unwrap(), AllowedUrls::default());
        assert!("http://a,nope".parse::<AllowedUrls>().is_err());
    }

    #[test]
    fn allowed_base_url_matches_scheme_host_port_and_path_prefix() {
        let base: AllowedUrl = "http://evolution:8080/api/".parse().unwrap();
        let covers = |u: &str| base.covers(&Url::parse(u).unwrap());
        assert!(covers("http://evolution:8080/api"));
        assert!(covers("http://evolution:8080/api/chat/x?y=1"));
        assert!(!covers("http://evolution:8080/apix"));
        assert!(!covers("http://evolution:8080/other"));
        assert!(
            !covers("http://evolution:8080/api/../metrics"),
            "dot segments are resolved first"
        );
        assert!(!covers("https://evolution:8080/api/x"));
        assert!(!covers("http://evolution:8081/api/x"));
        assert!(!covers("http://evolution.evil:8080/api/x"));
        let root: AllowedUrl = "http://127.0.0.1:9000".parse().unwrap();
        assert!(root.covers(&Url::parse("http://127.0.0.1:9000/anything").unwrap()));
        assert!(!root.covers(&Url::parse("http://127.0.0.1:9001/").unwrap()));
        assert_eq!(root.to_string(), "http://127.0.0.1:9000");
    }

    #[test]
    fn provider_hosts_are_https_on_the_default_port() {
        let ok = |u: &str| on_provider_host(&Url::parse(u).unwrap(), PROVIDER_HOSTS);
        assert!(ok(
            "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1"
        ));
        assert!(ok("https://mms.twiliocdn.com/AC1/abc"));
        assert!(ok(
            "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1"
        ));
        assert!(ok(
            "https://waba-v2.360dialog.io/whatsapp_business/attachments/?mid=1"
        ));
        assert!(ok(
            "https://s3-external-1.amazonaws.com/media.twiliocdn.com/AC1/x"
        ));
        assert!(!ok("https://s3-external-1.amazonaws.com/attacker-bucket/x"));
        assert!(!ok("http://api.twilio.com/x"), "plain http");
        assert!(!ok("https://api.twilio.com:8443/x"), "another port");
        assert!(!ok("https://twilio.com.evil.example/x"));
        assert!(!ok("https://eviltwilio.com/x"));
        assert!(!ok("https://127.0.0.1/x"));
    }

    /// The check sits in the resolver, where the connection gets its addresses; its refusal is found again in
    /// reqwest's error and reported as a refusal, not as a network failure to retry.
    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_when_connecting() {
        crate::install_tls();
        let client = |internal: &[&str]| {
            reqwest::Client::builder()
                .no_proxy()
                .dns_resolver(GuardedResolver {
                    internal_names: internal.iter().map(|n| n.to_string()).collect(),
                })
                .build()
                .unwrap()
        };
        let e = client(&[])
            .get("http://localhost:9/")
            .send()
            .await
            .unwrap_err();
        match connection_error(e) {
            OutboundError::Refused(reason) => {
                assert!(reason.contains("localhost resolves to"), "{reason}");
                assert!(reason.contains("loopback"), "{reason}");
            }
            other => panic!("not refused: {other:?}"),
        }
        // The same name as an allowed base URL's host resolves (nothing listens on port 9: a network failure).
        let e = client(&["localhost"])
            .get("http://localhost:9/")
            .send()
            .await
            .unwrap_err();
        assert!(matches!(connection_error(e), OutboundError::Failed(_)));
    }

    #[test]
    fn credentials_go_only_to_the_providers_own_hosts() {
        let mut config = Config::for_data_dir("/nonexistent");
        config.media_allowed_urls = "http://127.0.0.1:9000".parse().unwrap();
        config.evolution_api_url = Some("http://evolution:8080".into());
        let outbound = Outbound::new(&config);
        let twilio = Credential::TwilioBasic {
            sid: "AC1".into(),
            token: "t".into(),
        };
        let meta = Credential::MetaBearer("t".into());
        let evolution = Credential::EvolutionKey("k".into());
        let carries = |c: &Credential, u: &str| {
            let url = Url::parse(u).unwrap();
            outbound.may_carry(c, &url, &url)
        };
        assert!(carries(&twilio, "https://api.twilio.com/2010-04-01/x"));
        assert!(!carries(&twilio, "https://mms.twiliocdn.com/x"));
        assert!(carries(&meta, "https://graph.facebook.com/v21.0/1"));
        assert!(carries(&meta, "https://lookaside.fbsbx.com/x"));
        assert!(!carries(&meta, "https://scontent.whatsapp.net/x"));
        assert!(!carries(&evolution, "https://api.twilio.com/x"));
        assert!(carries(&evolution, "http://127.0.0.1:9000/chat"));
        assert!(!carries(&evolution, "http://127.0.0.1:9001/chat"));
        assert!(
            carries(&evolution, "http://evolution:8080/chat"),
            "FERRY_EVOLUTION_API_URL is allowed"
        );
        // Redirected from one allowed server to another: left behind. From Twilio's API to its CDN: too.
        let hop = |c: &Credential, from: &str, to: &str| {
            outbound.may_carry(c, &Url::parse(to).unwrap(), &Url::parse(from).unwrap())
        };
        assert!(!hop(
            &evolution,
            "http://evolution:8080/a",
            "http://127.0.0.1:9000/b"
        ));
        assert!(hop(
            &evolution,
            "http://127.0.0.1:9000/a",
            "http://127.0.0.1:9000/b"
        ));
        assert!(!hop(
            &twilio,
            "https://api.twilio.com/a",
            "https://mms.twiliocdn.com/b"
        ));
    }
}

//! The one URL providers reach this installation at, which every webhook address is built from. It is kept in
//! the database so that the server, its workers and the CLI on any machine print the same addresses: an explicit
//! `FERRY_PUBLIC_URL`/`--public-url` wins, then `ferry config set public-url`, then what `serve` last listened on.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use crate::config::Config;
use crate::store::{Store, StoreError};

const URL: &str = "public_url";
/// How often a running server reads the stored URL again.
pub const REFRESH: std::time::Duration = std::time::Duration::from_secs(10);
/// `explicit` (a flag, a variable or `config set`) or `bind` (the address `serve` listened on).
const SOURCE: &str = "public_url_source";

/// The installation's public URL as this process knows it; clones share it.
#[derive(Clone, Debug)]
pub struct PublicUrl(Arc<RwLock<String>>);

impl PublicUrl {
    pub fn get(&self) -> String {
        self.0.read().map(|u| u.clone()).unwrap_or_default()
    }

    fn set(&self, url: String) {
        if let Ok(mut current) = self.0.write() {
            *current = url;
        }
    }

    /// At start: the explicit setting, else the stored one, else the configured listen address.
    pub async fn load(config: &Config, store: &dyn Store) -> Result<Self, StoreError> {
        let url = match explicit(config) {
            Some(url) => url,
            None => match store.get_setting(URL).await? {
                Some(stored) => stored,
                None => config.public_url(),
            },
        };
        Ok(Self(Arc::new(RwLock::new(url))))
    }

    /// `serve` is listening on `listening`: an explicit URL is stored for every process; otherwise the
    /// address it listens on, unless one was set explicitly before.
    pub async fn record_serving(
        &self,
        config: &Config,
        store: &dyn Store,
        listening: &str,
    ) -> Result<(), StoreError> {
        if let Some(url) = explicit(config) {
            return store_url(self, store, &url, "explicit").await;
        }
        if store.get_setting(SOURCE).await?.as_deref() == Some("explicit") {
            return Ok(());
        }
        store_url(self, store, listening, "bind").await
    }

    /// Picks up a URL another process stored (`ferry config set public-url` while this server runs). An
    /// explicit URL of this process stays.
    pub async fn refresh(&self, config: &Config, store: &dyn Store) -> Result<(), StoreError> {
        if explicit(config).is_some() {
            return Ok(());
        }
        if let Some(stored) = store.get_setting(URL).await?
            && stored != self.get()
        {
            tracing::info!(public_url = %stored, "the public URL changed");
            self.set(stored);
        }
        Ok(())
    }

    /// `ferry config set public-url`: validated, stored for every process.
    pub async fn set_explicit(&self, store: &dyn Store, raw: &str) -> Result<String, String> {
        let url = parse(raw)?;
        store_url(self, store, &url, "explicit")
            .await
            .map_err(|e| e.to_string())?;
        Ok(url)
    }
}

async fn store_url(
    current: &PublicUrl,
    store: &dyn Store,
    url: &str,
    source: &str,
) -> Result<(), StoreError> {
    store.set_setting(URL, url).await?;
    store.set_setting(SOURCE, source).await?;
    current.set(url.to_owned());
    Ok(())
}

fn explicit(config: &Config) -> Option<String> {
    config
        .public_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| u.trim_end_matches('/').to_owned())
}

/// An `http(s)://host[:port][/path]` URL, without a trailing slash.
pub fn parse(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let url = url::Url::parse(raw).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!(
            "{raw:?} is not an http:// or https:// URL with a host"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{raw:?} has a query or fragment: give the base URL only"
        ));
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

/// Why providers cannot reach `url` (a loopback or private address, or a local name), if so.
pub fn unreachable(url: &str) -> Option<&'static str> {
    let parsed = url::Url::parse(url).ok()?;
    match parsed.host()? {
        url::Host::Domain(name) => {
            let name = name.to_ascii_lowercase();
            (name == "localhost"
                || !name.contains('.')
                || [".local", ".localhost", ".internal", ".lan", ".home.arpa"]
                    .iter()
                    .any(|suffix| name.ends_with(suffix)))
            .then_some("a local name")
        }
        url::Host::Ipv4(ip) => private_ip(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => private_ip(IpAddr::V6(ip)),
    }
}

fn private_ip(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() => Some("a loopback address"),
        IpAddr::V4(v4) if v4.is_private() || v4.is_link_local() || v4.is_unspecified() => {
            Some("a private address")
        }
        IpAddr::V6(v6) if v6.is_loopback() => Some("a loopback address"),
        IpAddr::V6(v6)
            if v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80 =>
        {
            Some("a private address")
        }
        _ => None,
    }
}

/// The one line said wherever webhook URLs are shown while providers cannot reach them.
pub fn warning(url: &str) -> Option<String> {
    unreachable(url).map(|what| {
        format!(
            "providers cannot reach {url} ({what}): set the public URL with FERRY_PUBLIC_URL, --public-url or \
             `ferry config set public-url https://…`"
        )
    })
}

/// For a link people open (an invitation): only a loopback address fails them, a private one may be their
/// office network.
pub fn person_warning(url: &str) -> Option<String> {
    (unreachable(url) == Some("a loopback address")).then(|| {
        format!(
            "this link names {} (a loopback address), which opens only on the machine ferry runs on: set the \
             public URL with `ferry config set public-url https://…` and invite again",
            base_of(url)
        )
    })
}

/// `scheme://host[:port]` of a URL.
fn base_of(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_links_warn_people() {
        let w = person_warning("http://127.0.0.1:3000/invite/abc").unwrap();
        assert!(
            w.starts_with("this link names http://127.0.0.1:3000 (a loopback address)"),
            "{w}"
        );
        assert!(person_warning("http://192.168.1.10:3000/invite/abc").is_none());
        assert!(person_warning("https://ferry.example.com/invite/abc").is_none());
    }

    #[test]
    fn only_http_base_urls_are_accepted() {
        assert_eq!(
            parse(" https://ferry.example.com/ ").unwrap(),
            "https://ferry.example.com"
        );
        assert_eq!(
            parse("http://203.0.113.7:8080/ferry").unwrap(),
            "http://203.0.113.7:8080/ferry"
        );
        assert!(parse("ftp://ferry.example.com").is_err());
        assert!(parse("ferry.example.com").is_err());
        assert!(parse("https://ferry.example.com/?x=1").is_err());
    }

    #[test]
    fn loopback_private_and_local_names_are_unreachable() {
        for url in [
            "http://127.0.0.1:3000",
            "http://localhost:3000",
            "http://10.1.2.3",
            "http://192.168.0.10:3000",
            "http://172.20.0.5",
            "http://[::1]:3000",
            "http://[fd00::1]",
            "http://ferry.local",
            "http://ferry:3000",
            "http://0.0.0.0:3000",
        ] {
            assert!(unreachable(url).is_some(), "{url}");
        }
        for url in [
            "https://ferry.example.com",
            "http://203.0.113.7:8080",
            "http://[2001:db8::1]",
        ] {
            assert_eq!(unreachable(url), None, "{url}");
        }
    }
}

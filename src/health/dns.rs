//! The DNS check: does the hub's hostname resolve? Any address counts (a CNAME chain
//! ending in Cloudflare's edge is the production case, but the check must not insist
//! on it). Uses the system's resolvers, or the one `health.dns_resolver` names.
//! A fresh resolver per check, so an answer cached from before a change cannot hide it.

use crate::config::DnsResolver;
use crate::status::Problem;
use hickory_resolver::Resolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use std::net::IpAddr;
use std::time::Duration;

/// Resolves `name` to its addresses, or says why not.
pub async fn resolve(
    name: &str,
    via: DnsResolver,
    timeout: Duration,
) -> Result<Vec<IpAddr>, Problem> {
    let mut builder = match via {
        DnsResolver::System => {
            Resolver::builder(TokioRuntimeProvider::default()).map_err(|e| Problem {
                code: "dns_config",
                message: format!("cannot read the system's resolver configuration: {e}"),
                hint: "check /etc/resolv.conf, or set health.dns_resolver to an IP:PORT",
            })?
        }
        DnsResolver::At(addr) => {
            let mut server = NameServerConfig::udp_and_tcp(addr.ip());
            for c in &mut server.connections {
                c.port = addr.port();
            }
            Resolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], vec![server]),
                TokioRuntimeProvider::default(),
            )
        }
    };
    let opts = builder.options_mut();
    opts.timeout = timeout;
    opts.attempts = 1;
    opts.cache_size = 0;
    let resolver = builder.build().map_err(|e| Problem {
        code: "dns_config",
        message: format!("cannot set up the DNS resolver: {e}"),
        hint: "check health.dns_resolver",
    })?;
    // A trailing dot: the hostname is absolute, no search domains apply.
    let fqdn = format!("{}.", name.trim_end_matches('.'));
    let lookup = tokio::time::timeout(timeout * 2, resolver.lookup_ip(fqdn.as_str())).await;
    match lookup {
        Err(_) | Ok(Err(NetError::Timeout)) => Err(Problem {
            code: "dns_timeout",
            message: format!("no DNS answer for {name} within {}ms", timeout.as_millis()),
            hint: "check that this host can reach its DNS resolver (or health.dns_resolver)",
        }),
        Ok(Err(e)) if e.is_nx_domain() => Err(Problem {
            code: "dns_nxdomain",
            message: format!("{name} does not exist in DNS (NXDOMAIN)"),
            hint: "a new hostname can take a few minutes to appear; if it stays, the DNS record is missing at Cloudflare: disable and enable again, or contact the control service's operator",
        }),
        Ok(Err(e)) if e.is_no_records_found() => Err(Problem {
            code: "dns_no_records",
            message: format!("{name} exists in DNS but has no address records"),
            hint: "the DNS record points nowhere yet; wait a few minutes, or check the record at Cloudflare",
        }),
        Ok(Err(e)) => Err(Problem {
            code: "dns_error",
            message: format!("resolving {name} failed: {e}"),
            hint: "check this host's DNS settings (or health.dns_resolver)",
        }),
        Ok(Ok(ips)) => {
            let ips: Vec<IpAddr> = ips.iter().collect();
            if ips.is_empty() {
                Err(Problem {
                    code: "dns_no_records",
                    message: format!("{name} resolved to no addresses"),
                    hint: "wait a few minutes, or check the record at Cloudflare",
                })
            } else {
                Ok(ips)
            }
        }
    }
}

//! What `omadm serve`, `gateway` and `notifier` print on stdout once they run: where, on what, and how to try it.

use std::io::Write as _;

use super::secrets::{ADMIN_TOKEN_FILE, AdminToken};
use super::settings::{Role, Settings};

/// What the banner tells beyond the settings: the real addresses (port 0) and this node's view of the cluster.
pub struct Started<'a> {
    pub public_url: &'a str,
    pub ops_url: Option<String>,
    pub internal_url: &'a str,
    pub node_id: &'a str,
    pub live_nodes: usize,
}

pub fn print(settings: &Settings, admin_token: &AdminToken, started: &Started<'_>) {
    let public_url = started.public_url;
    let token_line = match admin_token {
        AdminToken::Given(_) => "admin token: the one given by --admin-token / OMADM_ADMIN_TOKEN".to_owned(),
        AdminToken::Stored(token) => {
            format!("admin token: {token} (stored in {})", settings.data_dir.join(ADMIN_TOKEN_FILE).display())
        }
    };
    let shown_token = match admin_token {
        AdminToken::Given(_) => "$OMADM_ADMIN_TOKEN",
        AdminToken::Stored(token) => token.as_str(),
    };
    let role = settings.role.name();
    let mut lines = vec![format!("omadm {role}: listening on {public_url} (devices: POST {public_url}/dm)")];
    if settings.data_dir_only() {
        lines.push(format!("data dir: {}", settings.data_dir.display()));
    } else {
        lines.push(backends_line(settings));
    }
    lines.push(ops_line(started.ops_url.as_deref()));
    let internal = if started.internal_url.is_empty() {
        "no internal listener".to_owned()
    } else {
        format!("internal {}", started.internal_url)
    };
    lines.push(format!("node: {} ({internal}, {} live nodes)", started.node_id, started.live_nodes));
    lines.push(token_line);
    lines.push(format!("try: curl -H 'Authorization: Bearer {shown_token}' {public_url}/api/v1/devices"));
    write_lines(&lines);
}

/// The banner of a role without listeners of its own (`omadm notifier`): what it does, on what, its ops URL.
pub fn print_role(settings: &Settings, doing: &str, ops_url: Option<String>) {
    write_lines(&[
        format!("omadm {}: {doing}", settings.role.name()),
        backends_line(settings),
        ops_line(ops_url.as_deref()),
    ]);
}

fn backends_line(settings: &Settings) -> String {
    let backends = format!("store: {}; events: {}", shown_url(&settings.store), shown_url(&settings.bus));
    match settings.role {
        Role::Notifier | Role::Campaigns => backends,
        Role::Serve | Role::Gateway => {
            // The query of an s3:// URL may carry credentials.
            let content = settings.content.split('?').next().unwrap_or_default();
            format!("{backends}; content: {}", shown_url(content))
        }
    }
}

fn ops_line(ops_url: Option<&str>) -> String {
    match ops_url {
        Some(url) => format!("ops: {url} (/metrics, /healthz, /readyz)"),
        None => "ops: none (--ops-listen none)".to_owned(),
    }
}

/// Best effort: a closed stdout must not stop the role.
fn write_lines(lines: &[String]) {
    let mut stdout = std::io::stdout().lock();
    for line in lines {
        let _ = writeln!(stdout, "{line}");
    }
    let _ = stdout.flush();
}

/// A backend URL (or comma list of URLs) for messages: without the passwords `redis://user:password@host` may carry.
pub fn shown_url(url: &str) -> String {
    url.split(',')
        .map(|part| match (part.split_once("://"), part.rsplit_once('@')) {
            (Some((scheme, _)), Some((_, host))) => format!("{scheme}://***@{host}"),
            _ => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_the_banner() {
        assert_eq!(shown_url("redis://user:secret@10.0.0.2:6379"), "redis://***@10.0.0.2:6379");
        assert_eq!(shown_url("redis://10.0.0.2:6379"), "redis://10.0.0.2:6379");
        assert_eq!(shown_url("redis://:pw@a:1,redis://:pw@b:2"), "redis://***@a:1,redis://***@b:2");
    }
}

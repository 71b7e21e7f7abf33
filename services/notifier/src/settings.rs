//! The notifier's settings, declared once: flags and `OMADM_*` variables (clap), the `[notifier]` TOML table
//! (serde), every field optional; [`NotifierSettings::resolve`] fills the defaults and checks the values.
//!
//! ```text
//! --notifier-server-id ID           OMADM_SERVER_ID                 server_id             "omadm"
//! --notifier-dedup-window SECONDS   OMADM_NOTIFIER_DEDUP_WINDOW     dedup_window          60
//! --notifier-inventory-max-age S    OMADM_INVENTORY_MAX_AGE         inventory_max_age     86400
//! --notifier-udp-bind HOST:PORT     OMADM_NOTIFIER_UDP_BIND         udp_bind              "0.0.0.0:0"
//! --notifier-batch-size N           OMADM_NOTIFIER_BATCH_SIZE       batch_size            100
//! ```
//!
//! The flags carry a `notifier-` prefix so that `omadm serve` can take them beside the gateway's; the server id
//! and the inventory age share their variables with the gateway's, since they mean the same thing there.

use std::net::SocketAddr;
use std::time::Duration;

use omadm_core::clock::Millis;
use serde::{Deserialize, Serialize};

use crate::NotifierError;
use crate::plan::PackageRules;

/// The consumer group every notifier replica joins.
pub const CONSUMER_GROUP: &str = "omadm-notifier";

/// The notifier's settings as given: unset fields take their defaults in [`NotifierSettings::resolve`].
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierArgs {
    /// SERVER-ID of every Package#0: this server's DMAcc ServerID [default: omadm].
    #[arg(id = "notifier_server_id", long = "notifier-server-id", env = "OMADM_SERVER_ID", value_name = "ID")]
    pub server_id: Option<String>,
    /// A request for a device that was sent a Package#0 less than this long ago joins it (0: never) [default: 60].
    #[arg(long = "notifier-dedup-window", env = "OMADM_NOTIFIER_DEDUP_WINDOW", value_name = "SECONDS")]
    pub dedup_window: Option<u64>,
    /// REQ-MOS is set when the device's inventory is older than this, or was never read [default: 86400].
    #[arg(
        id = "notifier_inventory_max_age",
        long = "notifier-inventory-max-age",
        env = "OMADM_INVENTORY_MAX_AGE",
        value_name = "SECONDS"
    )]
    pub inventory_max_age: Option<u64>,
    /// The address WAP Push datagrams leave from [default: 0.0.0.0:0].
    #[arg(long = "notifier-udp-bind", env = "OMADM_NOTIFIER_UDP_BIND", value_name = "HOST:PORT")]
    pub udp_bind: Option<SocketAddr>,
    /// Requests read from the bus per batch, at most [default: 100].
    #[arg(long = "notifier-batch-size", env = "OMADM_NOTIFIER_BATCH_SIZE", value_name = "N")]
    pub batch_size: Option<usize>,
}

/// The notifier's settings, defaults filled in and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifierSettings {
    pub server_id: String,
    pub dedup_window: Duration,
    pub inventory_max_age: Duration,
    pub udp_bind: SocketAddr,
    pub batch_size: usize,
}

impl NotifierSettings {
    /// `args` with every unset field at its default; refuses an empty server id and a batch size of 0.
    pub fn resolve(args: &NotifierArgs) -> Result<NotifierSettings, NotifierError> {
        let server_id = args.server_id.clone().unwrap_or_else(|| "omadm".to_owned());
        if server_id.trim().is_empty() {
            return Err(NotifierError::Settings("the notifier's server id is empty".to_owned()));
        }
        let batch_size = args.batch_size.unwrap_or(100);
        if batch_size == 0 {
            return Err(NotifierError::Settings("the notifier's batch size must be at least 1".to_owned()));
        }
        Ok(NotifierSettings {
            server_id,
            dedup_window: Duration::from_secs(args.dedup_window.unwrap_or(60)),
            inventory_max_age: Duration::from_secs(args.inventory_max_age.unwrap_or(86_400)),
            udp_bind: args.udp_bind.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
            batch_size,
        })
    }

    pub(crate) fn package_rules(&self) -> PackageRules {
        PackageRules { server_id: self.server_id.clone(), inventory_max_age: millis(self.inventory_max_age) }
    }

    pub(crate) fn dedup_window_millis(&self) -> Millis {
        millis(self.dedup_window)
    }
}

fn millis(duration: Duration) -> Millis {
    Millis::try_from(duration.as_millis()).unwrap_or(Millis::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::Parser;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Command {
        #[command(flatten)]
        notifier: NotifierArgs,
        /// The gateway's flag of the same name: flattened together they must not clash.
        #[arg(long)]
        server_id: Option<String>,
    }

    #[test]
    fn defaults_fill_what_is_unset() {
        let settings = NotifierSettings::resolve(&NotifierArgs::default()).unwrap();
        assert_eq!(
            settings,
            NotifierSettings {
                server_id: "omadm".to_owned(),
                dedup_window: Duration::from_secs(60),
                inventory_max_age: Duration::from_secs(86_400),
                udp_bind: "0.0.0.0:0".parse().unwrap(),
                batch_size: 100,
            }
        );
    }

    #[test]
    fn flags_and_the_toml_table_fill_the_same_struct() {
        let parsed = Command::try_parse_from([
            "omadm",
            "--notifier-server-id",
            "dms.example.com",
            "--notifier-dedup-window",
            "5",
            "--notifier-udp-bind",
            "127.0.0.1:0",
            "--server-id",
            "gateway's",
        ])
        .unwrap();
        assert_eq!(parsed.notifier.server_id.as_deref(), Some("dms.example.com"));
        assert_eq!(parsed.server_id.as_deref(), Some("gateway's"));
        let file: NotifierArgs = toml::from_str("dedup_window = 9\nbatch_size = 10\ninventory_max_age = 1\n").unwrap();
        let merged = omadm_runtime::settings::layer(&parsed.notifier, &file).unwrap();
        let settings = NotifierSettings::resolve(&merged).unwrap();
        assert_eq!(settings.server_id, "dms.example.com");
        assert_eq!(settings.dedup_window, Duration::from_secs(5), "the flag wins over the file");
        assert_eq!((settings.batch_size, settings.inventory_max_age), (10, Duration::from_secs(1)));
        assert!(toml::from_str::<NotifierArgs>("dedup_windw = 9\n").is_err(), "unknown keys are refused");
    }

    #[test]
    fn empty_server_ids_and_empty_batches_are_refused() {
        let empty = NotifierArgs { server_id: Some(" ".to_owned()), ..NotifierArgs::default() };
        assert!(matches!(NotifierSettings::resolve(&empty), Err(NotifierError::Settings(_))));
        let no_batch = NotifierArgs { batch_size: Some(0), ..NotifierArgs::default() };
        assert!(matches!(NotifierSettings::resolve(&no_batch), Err(NotifierError::Settings(_))));
    }
}

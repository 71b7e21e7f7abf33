//! Settings layers: a role declares its settings once, as one struct that derives `clap::Args` (flags and their
//! `OMADM_*` variables) and serde (its TOML file), every field an `Option`; flags then win over the file.
//!
//! ```text
//! #[derive(clap::Args, Serialize, Deserialize, Default)]
//! #[serde(deny_unknown_fields)]
//! struct NotifierArgs {
//!     #[arg(long, env = "OMADM_LISTEN")] listen: Option<String>,     // --listen, OMADM_LISTEN, listen = "..."
//! }
//! let file: NotifierArgs = settings::read_toml(args.config.as_deref())?;
//! let merged = settings::layer(&args, &file)?;                     // flag or env, else file; defaults come after
//! ```

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A settings file or layer that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read config file {path}: {reason}")]
    Unreadable { path: String, reason: String },
    /// Unknown field, wrong type: the TOML error on one line.
    #[error("invalid config file {path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("cannot merge settings: {0}")]
    Merge(String),
}

/// Reads the TOML file at `path` into `T`; no path means `T::default()` (every field unset).
pub fn read_toml<T: DeserializeOwned + Default>(path: Option<&Path>) -> Result<T, SettingsError> {
    let Some(path) = path else { return Ok(T::default()) };
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|error| SettingsError::Unreadable { path: shown.clone(), reason: error.to_string() })?;
    toml::from_str(&text)
        .map_err(|error| SettingsError::Invalid { path: shown, reason: error.to_string().replace('\n', " ") })
}

/// `over` where it sets a value, else `under`, field by field and into nested structs; a list counts as one value.
///
/// Both are read through serde, so the one struct a role declares serves every layer (no per-field merge code).
pub fn layer<T: Serialize + DeserializeOwned>(over: &T, under: &T) -> Result<T, SettingsError> {
    let merge_error = |error: serde_json::Error| SettingsError::Merge(error.to_string());
    let mut merged = serde_json::to_value(under).map_err(merge_error)?;
    let over = serde_json::to_value(over).map_err(merge_error)?;
    overlay(&mut merged, over);
    serde_json::from_value(merged).map_err(merge_error)
}

fn overlay(under: &mut serde_json::Value, over: serde_json::Value) {
    use serde_json::Value;
    match (under, over) {
        (_, Value::Null) => {}
        (Value::Object(under), Value::Object(over)) => {
            for (key, value) in over {
                overlay(under.entry(key).or_insert(Value::Null), value);
            }
        }
        (under, over) => *under = over,
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Role {
        listen: Option<String>,
        workers: Option<usize>,
        topics: Option<Vec<String>>,
        #[serde(default)]
        nested: Nested,
    }

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Nested {
        name: Option<String>,
        size: Option<u32>,
    }

    #[test]
    fn set_values_win_and_unset_ones_fall_through() {
        let flags = Role {
            listen: Some("127.0.0.1:1".to_owned()),
            topics: Some(vec!["a".to_owned()]),
            nested: Nested { size: Some(2), ..Nested::default() },
            ..Role::default()
        };
        let file: Role = toml::from_str(
            "listen = \"0.0.0.0:9\"\nworkers = 4\ntopics = [\"b\", \"c\"]\n[nested]\nname = \"n\"\nsize = 9\n",
        )
        .unwrap();
        let merged = layer(&flags, &file).unwrap();
        assert_eq!(
            merged,
            Role {
                listen: Some("127.0.0.1:1".to_owned()),
                workers: Some(4),
                topics: Some(vec!["a".to_owned()]),
                nested: Nested { name: Some("n".to_owned()), size: Some(2) },
            }
        );
        assert_eq!(layer(&Role::default(), &Role::default()).unwrap(), Role::default());
    }

    #[test]
    fn files_are_read_whole_and_refused_with_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("role.toml");
        std::fs::write(&path, "workers = 3\n").unwrap();
        assert_eq!(read_toml::<Role>(Some(&path)).unwrap().workers, Some(3));
        assert_eq!(read_toml::<Role>(None).unwrap(), Role::default());
        std::fs::write(&path, "wrokers = 3\n").unwrap();
        let error = read_toml::<Role>(Some(&path)).unwrap_err().to_string();
        assert!(error.starts_with("invalid config file ") && error.contains("wrokers") && !error.contains('\n'));
        let missing = read_toml::<Role>(Some(&dir.path().join("absent.toml"))).unwrap_err();
        assert!(matches!(missing, SettingsError::Unreadable { .. }));
    }
}

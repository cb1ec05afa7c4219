//! What a cluster would keep for each object (uid, generation, spec, status), in a state file,
//! and files only their owner can read.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub(super) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Writes a file only its owner can read (links and keys are bearer credentials).
pub(super) fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut file = open_private(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")
}

/// Creates (or truncates) a file only its owner can read.
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// What a cluster would keep for each object.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct State {
    pub(super) objects: BTreeMap<String, Entry>,
    /// How many times each key was pruned: an object put back after `--prune` removed it is a
    /// new object (a new uid, so a new invitation), as a re-created object is in a cluster.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) pruned: BTreeMap<String, u32>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Entry {
    pub(super) uid: String,
    pub(super) generation: i64,
    pub(super) spec: Json,
    #[serde(default = "Json::null")]
    pub(super) status: Json,
}

/// A JSON value kept as its text: a state of 10,000 objects parsed into `Value`s was most of a
/// run's memory, and only a few fields of a few entries are ever read.
#[derive(Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub(super) struct Json(Box<serde_json::value::RawValue>);

impl Json {
    pub(super) fn null() -> Json {
        Json::of(&Value::Null)
    }

    pub(super) fn of(value: &Value) -> Json {
        Json(serde_json::value::to_raw_value(value).expect("a Value serializes"))
    }

    pub(super) fn is_null(&self) -> bool {
        self.0.get().trim() == "null"
    }

    pub(super) fn value(&self) -> Value {
        serde_json::from_str(self.0.get()).unwrap_or(Value::Null)
    }

    /// Whether this is `value` (compared as text first: the state is written compact).
    pub(super) fn is(&self, value: &Value) -> bool {
        serde_json::to_string(value).is_ok_and(|text| text == self.0.get())
            || self.value() == *value
    }
}

impl State {
    pub(super) fn load(path: &Path) -> anyhow::Result<State> {
        // Read as it is parsed: the whole text and the entries made from it at once were twice
        // the state's size in memory.
        match std::fs::File::open(path) {
            Ok(file) => Ok(
                serde_json::from_reader(std::io::BufReader::new(file)).map_err(|e| {
                    anyhow::anyhow!(
                        "{} is damaged ({e}); move it away to start over",
                        path.display()
                    )
                })?,
            ),
            Err(_) => Ok(State::default()),
        }
    }

    pub(super) fn save(&self, path: &Path) -> anyhow::Result<()> {
        // Compact: kept as raw text per entry, a pretty file would not stay pretty anyway.
        // Written as it is serialized: the whole text at once (11 MB at 10,000 objects) was
        // the peak of a run's memory.
        let staging = path.with_extension("json.tmp");
        let mut file = std::io::BufWriter::new(open_private(&staging)?);
        serde_json::to_writer(&mut file, self)?;
        file.write_all(b"\n")?;
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(staging, path)?;
        Ok(())
    }
}

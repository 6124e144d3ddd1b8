//! `config.yaml`: what a bare `fleetctx sync` scans. Flags given on the command
//! line replace the matching settings. Each cloud reads its own section (named
//! after it); the rest are the keys below.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use yaml_serde::{Mapping, Value};

use crate::cloud::{CLOUDS, Section};
use crate::error::{Error, Result};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings {
    pub kubeconfig: Option<PathBuf>,
    pub name_template: Option<String>,
    pub exec_command: Option<String>,
    pub concurrency: Option<usize>,
    /// The file the settings came from, and each cloud's section.
    #[serde(skip)]
    file: PathBuf,
    #[serde(skip)]
    sections: Mapping,
}

/// `$XDG_CONFIG_HOME/fleetctx/config.yaml`, else the platform's config directory.
pub fn default_path() -> Option<PathBuf> {
    match std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from) {
        Some(xdg) if xdg.is_absolute() => Some(xdg.join("fleetctx").join("config.yaml")),
        _ => directories::ProjectDirs::from("", "", "fleetctx")
            .map(|d| d.config_dir().join("config.yaml")),
    }
}

impl Settings {
    /// Reads the settings file. The default file may be absent; one named with
    /// `--config` must exist.
    pub fn load(explicit: Option<&Path>) -> Result<Settings> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => match default_path() {
                Some(p) if p.exists() => p,
                _ => return Ok(Settings::default()),
            },
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::new(format!("could not read settings file {}", path.display())).cause(e)
        })?;
        if text.trim().is_empty() {
            return Ok(Settings::default());
        }
        let invalid = |why: String| {
            Error::new(format!("settings file {} is not valid", path.display()))
                .because(why)
                .hint("see the README's `config.yaml` section for the keys fleetctx reads")
        };
        let mut top: Mapping = yaml_serde::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let mut sections = Mapping::new();
        for cloud in CLOUDS {
            if let Some(section) = top.remove(cloud.name()) {
                sections.insert(Value::String(cloud.name().to_string()), section);
            }
        }
        let mut settings: Settings =
            yaml_serde::from_value(Value::Mapping(top)).map_err(|e| invalid(e.to_string()))?;
        settings.kubeconfig = settings
            .kubeconfig
            .map(|p| expand_home(&p.to_string_lossy()).into());
        settings.exec_command = settings.exec_command.map(|c| expand_home(&c));
        settings.file = path;
        settings.sections = sections;
        Ok(settings)
    }

    /// A cloud's section, when the file has one.
    pub fn section(&self, cloud: &str) -> Option<Section<'_>> {
        self.sections.get(cloud).map(|value| Section {
            file: &self.file,
            value,
        })
    }
}

/// The kubeconfig the fleet lives in, for the commands that read it (`list`,
/// `kubeconfig`, `shell`, completion): `--kubeconfig`, else config.yaml's
/// `kubeconfig` (where `sync` writes), else `None`: the files kubectl reads.
pub fn fleet_kubeconfig(explicit: Option<&Path>) -> Result<Option<PathBuf>> {
    match explicit {
        Some(path) => Ok(Some(path.to_path_buf())),
        None => Ok(Settings::load(None)?.kubeconfig),
    }
}

/// `~`, `~/...`, `$HOME` and `${HOME}` at the start of a path mean the home
/// directory, as they do in a shell (config.yaml is read by no shell).
pub fn expand_home(path: &str) -> String {
    let Some(home) = directories::BaseDirs::new().map(|d| d.home_dir().display().to_string())
    else {
        return path.to_string();
    };
    for prefix in ["~", "${HOME}", "$HOME"] {
        if let Some(rest) = path.strip_prefix(prefix)
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return format!("{home}{rest}");
        }
    }
    path.to_string()
}

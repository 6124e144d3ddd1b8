//! `fleetctx status`: every cluster's state in one command, through the library.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgMatches, Args};
use futures::StreamExt;

use crate::error::{Error, Exit, Result, write_stdout};
use crate::fleet::{self, Cluster, Sources};
use crate::list::Format;
use crate::status::{ClusterStatus, probe};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only contexts matching PATTERN (`*` matches any run of characters); repeatable.
    #[arg(long = "context", value_name = "PATTERN")]
    pub contexts: Vec<String>,
    /// Output format; json and yaml are stable shapes for scripts.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Give each cluster this long (`10s`, `500ms`, `2m`, or seconds).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration)]
    pub timeout: Duration,
    /// Probe the clusters `sync` would discover (its source flags, which imply
    /// this, else config.yaml), without writing anything, instead of the managed
    /// contexts of the kubeconfig.
    #[arg(long)]
    pub discover: bool,
    /// Read this kubeconfig (default: config.yaml's kubeconfig, else the files kubectl reads).
    #[arg(long, value_name = "FILE", conflicts_with = "discover")]
    pub kubeconfig: Option<PathBuf>,
    /// Most clusters probed at once.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub concurrency: usize,
}

fn duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((text, "s"), |at| text.split_at(at));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (10s, 500ms, 2m)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: the unit is ms, s or m")),
    };
    match Duration::try_from_secs_f64(seconds) {
        Ok(d) if d.is_zero() => Err("a timeout of zero fails every cluster".to_string()),
        Ok(d) if d <= Duration::from_secs(86_400) => Ok(d),
        _ => Err(format!("{text:?}: at most a day (1440m)")),
    }
}

/// `*` matches any run of characters; everything else itself.
fn matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i == parts.len() - 1 {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

pub fn exec(args: StatusArgs, flags: &ArgMatches, quiet: bool) -> Result<Exit> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::new("could not start the async runtime").cause(e))?;
    // Naming sources means discovering them.
    let scan = discover_args(flags);
    let discover = args.discover || !scan.is_empty();
    let mut sources_failed = false;
    let mut clusters: Vec<(String, Result<Cluster>)> = if discover {
        let fleet = runtime.block_on(fleet::discover(&Sources::from_args(scan)))?;
        for skipped in &fleet.skipped {
            crate::error::warn(skipped);
        }
        for source in &fleet.sources {
            if let fleet::Outcome::Failed(why) = &source.outcome {
                sources_failed = true;
                eprintln!("{why}");
            }
        }
        fleet
            .clusters
            .into_iter()
            .map(|c| (c.name.clone(), Ok(c)))
            .collect()
    } else {
        fleet::managed(args.kubeconfig.as_deref(), true)?
    };
    if clusters.is_empty() && !discover {
        crate::error::warn(
            "no context fleetctx manages in the kubeconfig (run `fleetctx sync` first, or `fleetctx status --discover`)",
        );
    }
    if !args.contexts.is_empty() {
        clusters.retain(|(name, _)| args.contexts.iter().any(|p| matches(p, name)));
    }
    let progress = crate::discovery::Progress::counting(quiet, "clusters");
    progress.expect(clusters.len());
    let timeout = args.timeout;
    let mut report: Vec<ClusterStatus> = runtime.block_on(
        futures::stream::iter(&clusters)
            .map(|(name, cluster)| {
                progress.step(async move {
                    match cluster {
                        Ok(cluster) => probe(cluster, timeout).await,
                        Err(why) => ClusterStatus::unusable(name, why),
                    }
                })
            })
            .buffer_unordered(args.concurrency.max(1))
            .collect(),
    );
    progress.clear();
    // A refresh a timed-out probe left behind must not hold the report back.
    runtime.shutdown_timeout(Duration::from_millis(100));
    report.sort_by(|a, b| a.context.cmp(&b.context));
    let failed = sources_failed || report.iter().any(|s| s.state != "ok");
    let text = match args.output {
        Format::Table => table(&report),
        Format::Json => serde_json::to_string_pretty(&report)
            .map_err(|e| Error::new("could not render the report").cause(e))?,
        Format::Yaml => yaml_serde::to_string(&report)
            .map_err(|e| Error::new("could not render the report").cause(e))?,
    };
    write_stdout(text.trim_end())?;
    Ok(if failed { Exit::Partial } else { Exit::Success })
}

/// The scan flags given to `status`, as `fleetctx sync` would take them.
fn discover_args(flags: &ArgMatches) -> Vec<String> {
    use clap::parser::ValueSource;
    let mut args = Vec::new();
    let scan = crate::cloud::scan_flags(clap::Command::new("scan"));
    for arg in scan.get_arguments() {
        let (id, Some(long)) = (arg.get_id().as_str(), arg.get_long()) else {
            continue;
        };
        if flags.value_source(id) != Some(ValueSource::CommandLine) {
            continue;
        }
        if matches!(arg.get_action(), clap::ArgAction::SetTrue) {
            args.push(format!("--{long}"));
            continue;
        }
        for value in flags.get_raw(id).into_iter().flatten() {
            // One word: a value may start with `-` (a filter's negation).
            args.push(format!("--{long}={}", value.to_string_lossy()));
        }
    }
    args
}

/// Summary first, then one row per cluster, sorted.
fn table(report: &[ClusterStatus]) -> String {
    let ok = report.iter().filter(|s| s.state == "ok").count();
    let mut reasons: std::collections::BTreeMap<&str, usize> = Default::default();
    for s in report.iter().filter(|s| s.state != "ok") {
        *reasons.entry(s.state).or_default() += 1;
    }
    let mut out = format!("{} clusters: {ok} ok", report.len());
    for (state, n) in &reasons {
        out.push_str(&format!(", {n} {state}"));
    }
    out.push('\n');
    let rows: Vec<[String; 7]> = report
        .iter()
        .map(|s| {
            [
                s.context.clone(),
                match &s.reason {
                    None => s.state.to_string(),
                    Some(why) => format!("{}: {why}", s.state),
                },
                s.version.clone().unwrap_or_else(|| "-".to_string()),
                s.nodes.text(),
                s.namespaces.text(),
                s.pods.text(),
                s.latency_ms.map_or("-".to_string(), |ms| format!("{ms}ms")),
            ]
        })
        .collect();
    let header = [
        "CONTEXT",
        "STATUS",
        "VERSION",
        "NODES",
        "NAMESPACES",
        "PODS",
        "LATENCY",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate().take(6) {
            // The status may be long: it is the last column to be padded.
            if i != 1 {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let status_width = rows
        .iter()
        .map(|r| r[1].chars().count().min(40))
        .max()
        .unwrap_or(0)
        .max(6);
    widths[1] = status_width;
    let line = |cells: Vec<String>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        text.trim_end().to_string()
    };
    out.push_str(&line(header.iter().map(|h| h.to_string()).collect()));
    out.push('\n');
    for row in rows {
        // Cells after a long status keep their columns: the status is cut here
        // and given whole in -o json.
        let mut cells = row.to_vec();
        if cells[1].chars().count() > status_width {
            cells[1] = cells[1].chars().take(status_width - 1).collect::<String>() + "…";
        }
        out.push_str(&line(cells));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_with_stars() {
        assert!(matches("gke_*", "gke_p_eu_a"));
        assert!(matches("*_prod", "eks_dev_prod"));
        assert!(matches("eks_*_us-east-1_*", "eks_dev_us-east-1_c1"));
        assert!(!matches("eks_*_us-east-1_*", "eks_dev_eu-west-1_c1"));
        assert!(matches("exact", "exact"));
        assert!(!matches("exact", "exactly"));
    }

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("3"), Ok(Duration::from_secs(3)));
        assert!(duration("3h").is_err());
        assert!(duration("0s").is_err());
        assert!(duration("99999999999999999999s").is_err());
    }
}

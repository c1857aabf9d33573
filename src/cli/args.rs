//! The command line's grammar (clap). DESIGN.md fixes the command names; tests use them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "drplan", version, about = "Disaster-recovery plans as code, checked, drilled and run")]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// The state directory: the simulated datacenter's state and the run journal
    /// [default: .drplan beside the site file].
    #[arg(long = "state", global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The site file [default: site.toml beside the plan, or in the current directory].
    #[arg(long, global = true, value_name = "FILE")]
    pub site: Option<PathBuf>,
    /// Answer yes to confirmations (required without a terminal).
    #[arg(long, global = true)]
    pub yes: bool,
    /// Tables as wide as their cells; without it they fit the terminal, or 120 columns.
    #[arg(long, global = true)]
    pub wide: bool,
    /// More log output (-v debug, -vv trace); RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

fn parse_point(text: &str) -> Result<crate::model::PointChoice, String> {
    text.parse()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    #[default]
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Test,
    Planned,
    Unplanned,
}

impl From<Kind> for crate::model::FailoverKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Test => crate::model::FailoverKind::Test,
            Kind::Planned => crate::model::FailoverKind::Planned,
            Kind::Unplanned => crate::model::FailoverKind::Unplanned,
        }
    }
}

/// What a dry run rehearses: a failover of a kind, or what `drplan failback` would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DryRunKind {
    Test,
    Planned,
    Unplanned,
    /// R37, R38: the plan's VMs back home (a planned failover back), committed and
    /// reprotected towards the recovery site again.
    Failback,
}

impl DryRunKind {
    /// The kind of failover it runs, and which way: a failback is a planned failover back.
    pub fn split(self) -> (Kind, crate::plan::Direction) {
        use crate::plan::Direction;
        match self {
            DryRunKind::Test => (Kind::Test, Direction::Failover),
            DryRunKind::Planned => (Kind::Planned, Direction::Failover),
            DryRunKind::Unplanned => (Kind::Unplanned, Direction::Failover),
            DryRunKind::Failback => (Kind::Planned, Direction::Failback),
        }
    }
}

/// How a plan runs, for real or as a dry run.
#[derive(Debug, Args)]
pub struct RunOptions {
    /// latest (the default), latest-processed, latest-app-consistent, or an RFC 3339
    /// time (R33). Not for a planned failover: it always syncs to the end (R31).
    #[arg(long, value_parser = parse_point)]
    pub point: Option<crate::model::PointChoice>,
    /// How many VMs of a group fail over at once.
    #[arg(long, default_value_t = 8)]
    pub parallel: usize,
    /// human: a report (dry run) or live progress; json: the report, or events as JSON lines.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    #[command(flatten)]
    pub scope: Scope,
    /// R32: an unplanned failover that does not try to shut the source down first.
    #[arg(long)]
    pub no_shutdown: bool,
}

impl RunOptions {
    /// What these options change of the plan, checked against the kind of failover.
    pub fn overrides(&self, kind: Kind) -> Result<crate::cli::context::Overrides, String> {
        if self.no_shutdown && kind != Kind::Unplanned {
            return Err("--no-shutdown goes with --kind unplanned: a planned failover always shuts the source down first (R31), a drill never does (R30)".into());
        }
        self.scope.overrides(kind)
    }
}

/// Which VMs of a plan a run (or its preflight) takes, and a drill's network.
#[derive(Debug, Args)]
pub struct Scope {
    /// R22: fail over only this VM of the plan, with its own steps (repeat for several).
    #[arg(long = "vm", value_name = "VM")]
    pub vms: Vec<String>,
    /// R30: a drill's isolated network, instead of the plan's `test_network`.
    #[arg(long, value_name = "NETWORK")]
    pub test_network: Option<String>,
}

impl Scope {
    pub fn overrides(&self, kind: Kind) -> Result<crate::cli::context::Overrides, String> {
        if self.test_network.is_some() && kind != Kind::Test {
            return Err("--test-network chooses a drill's isolated network: it goes with --kind test (R30)".into());
        }
        Ok(crate::cli::context::Overrides { vms: self.vms.clone(), test_network: self.test_network.clone() })
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compiles a plan and validates it against the site and the protection state; with
    /// --kind or --point, also checks every VM as a failover of that kind would (R33:
    /// the point exists for each VM). Changes nothing.
    Check {
        plan: PathBuf,
        #[arg(long, value_enum)]
        kind: Option<Kind>,
        /// latest, latest-processed, latest-app-consistent, or an RFC 3339 time (R33).
        #[arg(long, value_parser = parse_point)]
        point: Option<crate::model::PointChoice>,
    },
    /// Runs a plan against a scratch copy of the simulated datacenter, on a virtual
    /// clock: the exact steps, the predicted timeline and RTO; nothing is changed.
    /// `--kind failback` rehearses `drplan failback`.
    DryRun {
        plan: PathBuf,
        #[arg(long, value_enum, default_value = "planned")]
        kind: DryRunKind,
        #[command(flatten)]
        run: RunOptions,
        /// Also draw the predicted timeline as an SVG Gantt chart, as `show --svg` does.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
    },
    /// Is the world ready for this plan, right now? Checks without changing anything: the
    /// plan's check, every VM as a run of this kind would (state, recovery point, where its
    /// replica lands: host, storage, networks, addresses), and each DNS server and key the
    /// run would use (signed queries only). A checklist; exit 0 only when all is ready.
    Preflight {
        plan: PathBuf,
        #[arg(long, value_enum, default_value = "planned")]
        kind: Kind,
        /// latest (the default), latest-processed, latest-app-consistent, or an RFC 3339
        /// time (R33); not for a planned failover (R31).
        #[arg(long, value_parser = parse_point)]
        point: Option<crate::model::PointChoice>,
        #[command(flatten)]
        scope: Scope,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Prints Rhai definitions of the host API, for editor completion.
    Defs,
    /// Runs a plan's failover against the fabric, journaled (R30-R33).
    Failover {
        plan: PathBuf,
        #[arg(long, value_enum)]
        kind: Kind,
        #[command(flatten)]
        run: RunOptions,
        /// Approve every manual step at once, as taking its estimate, journaled: for
        /// rehearsals (drills, or any run on a simulated site).
        #[arg(long)]
        approve_manual: bool,
        /// Skip the preflight's look at the outside world (each DNS server and key the run
        /// uses); the checks of the plan and of every VM always run.
        #[arg(long)]
        no_preflight: bool,
    },
    /// R37, R38: brings the plan's VMs back to their original site (a planned failover back,
    /// in group order), then commits and reprotects them towards the recovery site.
    Failback {
        plan: PathBuf,
        #[arg(long, default_value_t = 8)]
        parallel: usize,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Approve every manual step at once, as taking its estimate, journaled (simulated sites).
        #[arg(long)]
        approve_manual: bool,
        /// Skip the preflight's look at the outside world (DNS servers and keys).
        #[arg(long)]
        no_preflight: bool,
    },
    /// R34: makes the failover of every VM of the plan final.
    Commit { plan: PathBuf },
    /// R34: moves every VM of an uncommitted failover to another recovery point.
    ChangePoint {
        plan: PathBuf,
        /// latest-processed, latest-app-consistent, or an RFC 3339 time (R33).
        #[arg(long, value_parser = parse_point)]
        point: crate::model::PointChoice,
    },
    /// R36: replicates every VM of the plan from where it runs back to the other site.
    Reprotect { plan: PathBuf },
    /// R30: ends a test failover: deletes the plan's test VMs and records the notes.
    Cleanup {
        plan: PathBuf,
        #[arg(long, default_value = "")]
        notes: String,
    },
    /// Continues a run that failed or whose process died; finished steps are not redone.
    Resume {
        run: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// R32: go on with a planned failover or failback as an unplanned one, for VMs whose
        /// source will not shut down (`--kind unplanned`; the only change of kind there is).
        #[arg(long, value_enum)]
        kind: Option<Kind>,
        /// Approve every manual step at once, as taking its estimate, journaled (drills, simulated sites).
        #[arg(long)]
        approve_manual: bool,
    },
    /// Lists the runs in the state directory.
    Runs {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// A run's report: steps, timeline, RTO, recovery points and data loss.
    Show {
        run: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Also draw the timeline as an SVG Gantt chart.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
    },
    /// Completes the manual step a run is waiting on (R21); works from any shell.
    Approve { run: String },
    /// Stops a run; VMs whose failover was cut off need reprotect (R35).
    Cancel {
        run: String,
        #[arg(long)]
        force: bool,
    },
    /// Protection state, recovery points, RPO and health of every VM.
    Status {
        /// Only these VMs.
        vms: Vec<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Enables protection: initial replication starts (R1-R6).
    Protect {
        #[arg(required = true)]
        vms: Vec<String>,
        /// The replication policy, from the site file.
        #[arg(long)]
        policy: String,
        /// A data disk to leave out of replication (R6); repeat for several.
        #[arg(long = "exclude-disk", value_name = "DISK")]
        exclude_disks: Vec<String>,
    },
    /// Disables protection (R14).
    Unprotect {
        #[arg(required = true)]
        vms: Vec<String>,
        /// Also delete the replica's disks on the recovery site.
        #[arg(long)]
        delete_replica: bool,
    },
    /// The recovery points a VM can fail over to now (R2, R12).
    Points { vm: String },
    /// The replication service of libvirt sites: the initial copy of each protected VM
    /// (R4), then an incremental copy at its policy's frequency (R1, R2), until
    /// interrupted. Commands run beside it.
    Replicate {
        /// One copy of every protected VM now, then exit.
        #[arg(long)]
        once: bool,
    },
    /// Every operation the fabric has run, with status and timings.
    Jobs {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Makes modelled time pass in the simulated datacenter (e.g. 30m, 2h, 1d).
    Advance {
        #[arg(value_name = "DURATION", value_parser = crate::model::parse_duration)]
        by: std::time::Duration,
    },
}

/// How wide reports may be when neither a terminal nor `--wide` says.
const DEFAULT_WIDTH: usize = 120;

impl Global {
    /// How wide a human report's tables may be: `--wide`: as wide as their cells; on a
    /// terminal, its width; otherwise 120 columns.
    pub fn width(&self) -> crate::report::table::Width {
        use crate::report::table::Width;
        if self.wide {
            return Width::Full;
        }
        let term = console::Term::stdout();
        let columns = if term.is_term() { usize::from(term.size().1) } else { DEFAULT_WIDTH };
        Width::Fit(columns.max(40))
    }

    /// The state directory: `--state`, else `.drplan` beside the site file the command
    /// reads (`--site`, else `site.toml` beside the plan, else in the current directory),
    /// so that one plan folder is one datacenter whichever directory drplan runs from.
    pub fn state(&self, plan: Option<&std::path::Path>) -> PathBuf {
        if let Some(dir) = &self.state_dir {
            return dir.clone();
        }
        let site = self.site.clone().or_else(|| {
            let beside = plan?.parent()?.join("site.toml");
            beside.exists().then_some(beside)
        });
        let folder = site.as_deref().and_then(std::path::Path::parent).filter(|p| !p.as_os_str().is_empty());
        folder.map_or_else(|| PathBuf::from(".drplan"), |folder| folder.join(".drplan"))
    }
}

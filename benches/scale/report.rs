//! How the scale bench reports: each figure as one printed line (value, target, verdict,
//! ratio against its baseline), each size's figures as one CSV row in fixed units, and
//! all sizes as the markdown table the README's performance section shows, with the
//! machine they were measured on.

use std::fmt::Write as _;

/// One printed figure.
pub struct Line {
    /// Keys the figure's row in the markdown table (the same figure at every size);
    /// `None` for lines only printed (baselines, details).
    pub row: Option<&'static str>,
    pub label: String,
    pub value: String,
    /// e.g. "< 1 s".
    pub target: Option<String>,
    pub pass: Option<bool>,
    /// This figure over its baseline, and what the baseline is.
    pub ratio: Option<(f64, String)>,
}

impl Line {
    /// A line that is only printed.
    pub fn info(label: impl Into<String>, value: impl Into<String>) -> Line {
        Line { row: None, label: label.into(), value: value.into(), target: None, pass: None, ratio: None }
    }

    /// A figure of the table.
    pub fn figure(row: &'static str, label: impl Into<String>, value: impl Into<String>) -> Line {
        Line { row: Some(row), ..Line::info(label, value) }
    }

    pub fn target(mut self, target: impl Into<String>, pass: bool) -> Line {
        self.target = Some(target.into());
        self.pass = Some(pass);
        self
    }

    /// A target the measure cannot judge this time (e.g. a difference lost in noise).
    pub fn target_unjudged(mut self, target: impl Into<String>) -> Line {
        self.target = Some(target.into());
        self.pass = None;
        self
    }

    pub fn ratio(mut self, ratio: f64, baseline: impl Into<String>) -> Line {
        self.ratio = Some((ratio, baseline.into()));
        self
    }

    fn verdict(&self) -> &'static str {
        match self.pass {
            Some(true) => "pass",
            Some(false) => "FAIL",
            None => "no verdict",
        }
    }

    pub fn print(&self) {
        let mut text = format!("  {}: {}", self.label, self.value);
        if let Some(target) = &self.target {
            let _ = write!(text, " (target {target}: {})", self.verdict());
        }
        if let Some((ratio, baseline)) = &self.ratio {
            let _ = write!(text, " — {ratio:.2}x {baseline}");
        }
        println!("{text}");
    }
}

/// Everything measured at one size.
pub struct Report {
    pub vms: usize,
    pub groups: usize,
    pub lines: Vec<Line>,
    /// CSV columns in order: name (with its unit) and value.
    pub columns: Vec<(&'static str, f64)>,
}

impl Report {
    pub fn new(vms: usize, groups: usize) -> Report {
        Report { vms, groups, lines: Vec::new(), columns: vec![("vms", vms as f64), ("groups", groups as f64)] }
    }

    /// Prints the line at once (a long size shows progress) and keeps it for the table.
    pub fn line(&mut self, line: Line) {
        line.print();
        self.lines.push(line);
    }

    pub fn column(&mut self, name: &'static str, value: f64) {
        self.columns.push((name, value));
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.columns.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

/// One header line and one row per size; sizes measured with fewer figures leave cells
/// empty.
pub fn csv(reports: &[Report]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for report in reports {
        for (name, _) in &report.columns {
            if !names.contains(name) {
                names.push(name);
            }
        }
    }
    let mut out = names.join(",");
    out.push('\n');
    for report in reports {
        let cells: Vec<String> = names
            .iter()
            .map(|name| match report.get(name) {
                Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.0}"),
                Some(v) => format!("{v:.3}"),
                None => String::new(),
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// The markdown table: one row per figure, one column per size.
pub fn markdown(reports: &[Report], machine: &Machine) -> String {
    let mut rows: Vec<(&'static str, &str, &str)> = Vec::new(); // (row, label, target)
    for report in reports {
        for line in &report.lines {
            if let Some(row) = line.row
                && !rows.iter().any(|(r, ..)| *r == row)
            {
                rows.push((row, &line.label, line.target.as_deref().unwrap_or("—")));
            }
        }
    }
    let mut out = String::from("| figure | target |");
    for report in reports {
        let _ = write!(out, " {} VMs / {} groups |", thousands(report.vms), report.groups);
    }
    out.push_str("\n| --- | --- |");
    out.push_str(&" --- |".repeat(reports.len()));
    out.push('\n');
    for (row, label, target) in rows {
        let _ = write!(out, "| {label} | {} |", target.replace('|', "\\|"));
        for report in reports {
            let cell = report.lines.iter().find(|l| l.row == Some(row)).map(|line| {
                let mut cell = line.value.clone();
                // A size whose target differs from the row's (100,000 VMs: < 10 s) says so.
                if let Some(own) = line.target.as_deref().filter(|own| *own != target) {
                    let _ = write!(cell, " (target {own})");
                }
                if let Some((ratio, _)) = line.ratio {
                    let _ = write!(cell, ", {ratio:.2}x");
                }
                match line.pass {
                    Some(true) => cell.push_str(" ✅"),
                    Some(false) => cell.push_str(" ❌"),
                    None => {}
                }
                cell
            });
            let _ = write!(out, " {} |", cell.unwrap_or_default());
        }
        out.push('\n');
    }
    let _ = write!(
        out,
        "\nRatios are against each figure's baseline, measured in the same run. Measured {} on {} \
         ({} cores, {} RAM), {}.\n",
        machine.date, machine.cpu, machine.cores, machine.ram, machine.rustc
    );
    out
}

/// `12345` as "12,345".
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What the figures were measured on.
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub ram: String,
    pub rustc: String,
    pub date: String,
}

impl Machine {
    pub fn here() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or("unknown CPU".into(), |(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "));
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let ram = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map_or("unknown".into(), |kb| format!("{:.1} GiB", kb / (1024.0 * 1024.0)));
        // The compiler that built this bench is the one on the PATH that cargo ran.
        let rustc = command_line("rustc", &["--version"]).unwrap_or_else(|| "rustc unknown".into());
        let date = command_line("date", &["-u", "+%Y-%m-%d"]).unwrap_or_else(|| "an unknown date".into());
        Machine { cpu, cores: std::thread::available_parallelism().map_or(1, |n| n.get()), ram, rustc, date }
    }
}

fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let output = std::process::Command::new(program).args(args).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

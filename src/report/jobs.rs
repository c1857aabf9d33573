//! The `drplan jobs` report: every fabric operation with its status and timings.

use super::table;
use crate::model::{HumanDuration, Job, JobStatus, format_time};

pub fn human(jobs: &[Job], width: table::Width) -> String {
    if jobs.is_empty() {
        return "no jobs yet\n".into();
    }
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            let status = match j.status {
                JobStatus::Running => "running",
                JobStatus::Succeeded => "succeeded",
                JobStatus::Failed => "FAILED",
                JobStatus::Cancelled => "cancelled",
            };
            let took = j.finished.map(|f| HumanDuration((f - j.started).to_std().unwrap_or_default()).to_string());
            vec![
                j.id.to_string(),
                j.operation.clone(),
                j.vm.clone(),
                status.into(),
                format_time(j.started),
                took.unwrap_or_else(|| "-".into()),
                j.detail.clone(),
            ]
        })
        .collect();
    {
        use table::{keep, wrap};
        let header =
            [keep("ID"), keep("OPERATION"), keep("VM"), keep("STATUS"), keep("STARTED"), keep("TOOK"), wrap("DETAIL")];
        table::render(&header, &rows, width)
    }
}

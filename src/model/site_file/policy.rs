//! Replication policies (R1-R4).

use std::time::Duration;

use super::checker::{Checker, POLICY};
use super::doc::{PolicyDoc, Text};
use super::values::one_of;
use crate::model::duration::{HumanDuration, parse_duration};
use crate::model::policy::{
    CopyFrequency, FAILBACK_POLICY_NAME, InitialReplication, PolicyError, ReplicationPolicy, StorageTier,
};

const DEFAULT_OFFLINE_TRANSFER: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_RPO_THRESHOLD: Duration = Duration::from_secs(30 * 60);

impl Checker<'_> {
    pub(super) fn policies(&mut self, docs: &[PolicyDoc]) -> Vec<ReplicationPolicy> {
        self.unique(docs, POLICY, "", |p| format!("policies.{:?}.name", p.name.get_ref()));
        docs.iter().map(|doc| self.policy(doc)).collect()
    }

    pub(super) fn policy(&mut self, doc: &PolicyDoc) -> ReplicationPolicy {
        let name = doc.name.get_ref();
        let at = format!("policies.{name:?}");
        let field = |f: &str| format!("{at}.{f}");
        if name == FAILBACK_POLICY_NAME {
            let message = "the policy name \"failback\" is reserved: failback replication always uses its fixed policy (R37); choose another name";
            self.error(doc.name.span(), field("name"), message);
        }
        let errors_before = self.errors.len();
        let copy_frequency =
            self.parse_or(doc.copy_frequency.as_ref(), field("copy_frequency"), CopyFrequency::default(), |s| {
                let every = parse_duration(s)?;
                CopyFrequency::from_duration(every)
                    .ok_or_else(|| PolicyError::CopyFrequency(HumanDuration(every)).to_string())
            });
        let retention = self.parse(&doc.retention, field("retention"), parse_duration).unwrap_or_default();
        let duration = |me: &mut Self, value: &Option<Text>, f: &str, default: Duration| {
            me.parse_or(value.as_ref(), field(f), default, parse_duration)
        };
        let app_consistent_every = duration(self, &doc.app_consistent, "app_consistent", Duration::ZERO);
        let rpo_threshold = duration(self, &doc.rpo_threshold, "rpo_threshold", DEFAULT_RPO_THRESHOLD);
        let tiers = [("standard", StorageTier::Standard), ("premium", StorageTier::Premium)];
        let target_storage =
            self.parse_or(doc.target_storage.as_ref(), field("target_storage"), StorageTier::default(), |s| {
                one_of(s, "storage tier", &tiers)
            });
        // R1, R3 are checked only when what they read parsed, lest a placeholder be blamed.
        let checkable = self.errors.len() == errors_before;
        let initial_replication_delay =
            duration(self, &doc.initial_replication_delay, "initial_replication_delay", Duration::ZERO);
        let transfer = duration(self, &doc.offline_transfer, "offline_transfer", DEFAULT_OFFLINE_TRANSFER);
        let methods = [("network", false), ("offline", true)];
        let offline = self.parse_or(doc.initial_replication.as_ref(), field("initial_replication"), false, |s| {
            one_of(s, "initial replication method", &methods)
        });
        let offline_fields = [
            ("export_path", &doc.export_path),
            ("import_path", &doc.import_path),
            ("offline_transfer", &doc.offline_transfer),
        ];
        let initial_replication = match (offline, &doc.initial_replication) {
            (true, Some(method)) => {
                // R4: an offline copy needs somewhere to export to and import from.
                let mut path = |f: &str, value: &Option<Text>, what: &str| match value {
                    Some(value) => value.get_ref().clone(),
                    None => {
                        let message = format!("offline initial replication needs {f}, {what}");
                        self.error(method.span(), field(f), message);
                        String::new()
                    }
                };
                InitialReplication::Offline {
                    export_path: path("export_path", &doc.export_path, "where the source exports the disks"),
                    import_path: path("import_path", &doc.import_path, "where the target imports them"),
                    transfer,
                }
            }
            _ => {
                for (f, value) in offline_fields {
                    if let Some(value) = value {
                        let message = format!(
                            "{f} applies only to offline initial replication (initial_replication = \"offline\")"
                        );
                        self.error(value.span(), field(f), message);
                    }
                }
                InitialReplication::Network
            }
        };
        let policy = ReplicationPolicy {
            name: name.clone(),
            copy_frequency,
            retention,
            app_consistent_every,
            initial_replication,
            initial_replication_delay,
            compression: doc.compression.unwrap_or(false),
            encryption_at_rest: doc.encryption.unwrap_or(false),
            target_storage,
            rpo_threshold,
        };
        if checkable && let Err(e) = policy.validate() {
            let (f, value) = match &e {
                PolicyError::CopyFrequency(_) => ("copy_frequency", doc.copy_frequency.as_ref()),
                PolicyError::ThirtySecondsToPremium => ("target_storage", doc.target_storage.as_ref()),
                PolicyError::AppConsistentFrequency(_) | PolicyError::AppConsistentNotBelowRetention { .. } => {
                    ("app_consistent", doc.app_consistent.as_ref())
                }
                PolicyError::RetentionNotHours(_) => ("retention", Some(&doc.retention)),
                PolicyError::ZeroRpoThreshold => ("rpo_threshold", doc.rpo_threshold.as_ref()),
            };
            self.error(value.unwrap_or(&doc.name).span(), field(f), e.to_string());
        }
        policy
    }
}

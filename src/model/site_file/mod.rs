//! The site file: the TOML text that describes a simulated datacenter pair, parsed into
//! a validated [`Inventory`]. Pure: the caller reads the file, the path only labels the
//! errors. Every error points at the offending value (line, column, a caret under it, as
//! rustc does), and all semantic errors are reported at once so an operator fixes the
//! file in one pass. The format is documented in `docs/site-file.md`.

mod checker;
mod doc;
mod error;
mod faults;
mod groups;
mod pieces;
mod policy;
mod settings;
#[cfg(test)]
mod tests;
mod topology;
mod values;
mod vms;

use std::path::Path;

use checker::{Checker, Names};
use doc::{SimulationDoc, SiteFileDoc, ThrottleDoc};
pub use error::{SiteFileError, SiteFileErrors};

use super::inventory::Inventory;

/// Parses and validates a site file as read from disk: its bytes must be UTF-8 text. A
/// byte that is not is reported at its line, like any other error.
pub fn parse_site_bytes(bytes: &[u8], path: &Path) -> Result<Inventory, SiteFileErrors> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_site(text, path),
        Err(e) => {
            // Up to the bad byte the text is valid, and the lossy copy is the same.
            let text = String::from_utf8_lossy(bytes);
            let at = e.valid_up_to();
            let message = format!("byte 0x{:02X} is not UTF-8: a site file is UTF-8 text; save it as UTF-8", bytes[at]);
            let mut checker = Checker::new(&text, path);
            checker.error(at..at + 1, String::new(), message);
            Err(checker.into_errors())
        }
    }
}

/// Parses and validates the text of a site file. `path` is only used in messages.
pub fn parse_site(text: &str, path: &Path) -> Result<Inventory, SiteFileErrors> {
    let mut checker = Checker::new(text, path);
    let doc = match pieces::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            checker.error(e.span, String::new(), e.message);
            return Err(checker.into_errors());
        }
    };
    let inventory = checker.inventory(&doc);
    if checker.errors.is_empty() { Ok(inventory) } else { Err(checker.into_errors()) }
}

impl Checker<'_> {
    /// The parts of the file in the order they are checked: what a part refers to is
    /// checked before it. Each part is checked in its own file beside this one.
    fn inventory(&mut self, doc: &SiteFileDoc) -> Inventory {
        let (simulation, shutdown_timeout) =
            self.simulation(doc.simulation.as_ref().unwrap_or(&SimulationDoc::default()));
        let throttle = self.throttle(doc.throttle.as_ref().unwrap_or(&ThrottleDoc::default()));
        let sites = self.sites(&doc.sites);
        let names = Names::new(doc);
        let pairings = self.pairings(doc, &names);
        let network_mappings = self.network_mappings(doc, &names, &pairings);
        let storage_mappings = self.storage_mappings(&doc.storage_mappings);
        let policies = self.policies(&doc.policies);
        let sizes = self.sizes(&doc.sizes);
        let (vms, initial_protection) = self.vms(doc, &names, &pairings, simulation.start);
        let replication_groups = self.groups(doc, &names);
        let faults = self.faults(doc, &names, simulation.start);
        Inventory {
            simulation,
            sites,
            pairings,
            network_mappings,
            storage_mappings,
            policies,
            sizes,
            throttle,
            shutdown_timeout,
            replication_groups,
            vms,
            initial_protection,
            faults,
            index: Default::default(),
        }
    }
}

//! Checking: turns the document into the model, collecting every error on the way. A
//! value that is wrong is reported once, where it is written; what depends on it is
//! skipped rather than reported again. Here: the checker and what every part uses (errors,
//! value parsing, name lookups); each part of the file has its own `impl Checker` beside.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::Hash;
use std::ops::Range;
use std::path::Path;

use super::doc::{GroupDoc, NetworkDoc, PolicyDoc, SiteDoc, SiteFileDoc, SizeDoc, SubnetDoc, Text, VmDoc};
use super::error::{SiteFileError, SiteFileErrors};
use crate::model::names::{list, plural};
use crate::model::snippet::Source;

/// Things the file names and refers to by name.
pub(super) trait Named {
    fn name(&self) -> &Text;
}

macro_rules! named {
    ($($doc:ty),*) => {
        $(impl Named for $doc {
            fn name(&self) -> &Text {
                &self.name
            }
        })*
    };
}
named!(SiteDoc, NetworkDoc, SubnetDoc, PolicyDoc, SizeDoc, GroupDoc, VmDoc);

/// A host is just its name.
impl Named for Text {
    fn name(&self) -> &Text {
        self
    }
}

/// A list the file refers to by name, indexed: every VM and NIC refers to a site, a host,
/// a network and a subnet, and a site file may list 100,000 VMs on thousands of hosts. A
/// repeated name finds the first (the repeat is reported where it is defined).
pub(super) struct Catalog<'d, T> {
    items: &'d [T],
    positions: HashMap<&'d str, usize>,
}

impl<'d, T: Named> Catalog<'d, T> {
    fn new(items: &'d [T]) -> Self {
        let mut positions = HashMap::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            positions.entry(item.name().get_ref().as_str()).or_insert(i);
        }
        Catalog { items, positions }
    }

    pub(super) fn get(&self, name: &str) -> Option<&'d T> {
        self.positions.get(name).map(|&i| &self.items[i])
    }
}

/// Everything the file refers to by name.
pub(super) struct Names<'d> {
    pub(super) sites: Catalog<'d, SiteDoc>,
    /// What is named within each site, by the site's name.
    pub(super) on_site: HashMap<&'d str, SiteNames<'d>>,
    pub(super) policies: Catalog<'d, PolicyDoc>,
    pub(super) sizes: Catalog<'d, SizeDoc>,
    pub(super) vms: Catalog<'d, VmDoc>,
}

pub(super) struct SiteNames<'d> {
    pub(super) site: &'d SiteDoc,
    pub(super) hosts: Catalog<'d, Text>,
    pub(super) networks: Catalog<'d, NetworkDoc>,
    /// Each network's subnets, by the network's name.
    pub(super) subnets: HashMap<&'d str, Catalog<'d, SubnetDoc>>,
}

impl<'d> Names<'d> {
    pub(super) fn new(doc: &'d SiteFileDoc) -> Self {
        let mut on_site = HashMap::new();
        for site in &doc.sites {
            on_site.entry(site.name.get_ref().as_str()).or_insert_with(|| {
                let mut subnets = HashMap::new();
                for network in &site.networks {
                    subnets.entry(network.name.get_ref().as_str()).or_insert_with(|| Catalog::new(&network.subnets));
                }
                SiteNames { site, hosts: Catalog::new(&site.hosts), networks: Catalog::new(&site.networks), subnets }
            });
        }
        Names {
            sites: Catalog::new(&doc.sites),
            on_site,
            policies: Catalog::new(&doc.policies),
            sizes: Catalog::new(&doc.sizes),
            vms: Catalog::new(&doc.vms),
        }
    }

    /// What is named on `site`, a site that `sites` found.
    pub(super) fn site(&self, site: &SiteDoc) -> &SiteNames<'d> {
        &self.on_site[site.name.get_ref().as_str()]
    }
}

/// Where in the document a value is, e.g. `vms."web01".os`, as errors name it: text, or
/// a closure that makes it, so that checking a VM or a NIC does not format the names of
/// all its fields that turn out fine (a site file may have 100,000 VMs).
pub(super) trait FieldPath {
    fn path(self) -> String;
}

impl FieldPath for String {
    fn path(self) -> String {
        self
    }
}

impl FieldPath for &str {
    fn path(self) -> String {
        self.to_string()
    }
}

impl<F: FnOnce() -> String> FieldPath for F {
    fn path(self) -> String {
        self()
    }
}

/// What a name refers to, for messages: "unknown policy ... (known policies: ...)".
#[derive(Clone, Copy)]
pub(super) struct Noun(&'static str);

impl Noun {
    fn plural(self) -> Cow<'static, str> {
        plural(self.0)
    }
}

pub(super) const SITE: Noun = Noun("site");
pub(super) const HOST: Noun = Noun("host");
pub(super) const NETWORK: Noun = Noun("network");
pub(super) const SUBNET: Noun = Noun("subnet");
pub(super) const POLICY: Noun = Noun("policy");
pub(super) const SIZE: Noun = Noun("size");
pub(super) const GROUP: Noun = Noun("replication group");
pub(super) const VM: Noun = Noun("VM");

pub(super) struct Checker<'t> {
    source: Source<'t>,
    path: &'t Path,
    pub(super) errors: Vec<SiteFileError>,
}

impl<'t> Checker<'t> {
    pub(super) fn new(text: &'t str, path: &'t Path) -> Self {
        Checker { source: Source::new(text), path, errors: Vec::new() }
    }

    pub(super) fn into_errors(mut self) -> SiteFileErrors {
        self.errors.sort_by_key(|e| (e.snippet.line, e.snippet.column));
        SiteFileErrors(self.errors)
    }

    /// The 1-based line of a byte offset.
    pub(super) fn line_of(&self, offset: usize) -> usize {
        self.source.line_of(offset)
    }

    pub(super) fn error(&mut self, span: Range<usize>, field: impl FieldPath, message: impl Into<String>) {
        self.errors.push(SiteFileError {
            path: self.path.to_path_buf(),
            field: field.path(),
            message: message.into(),
            snippet: self.source.snippet(span),
        });
    }

    /// Parses a value, or reports why not at the value.
    pub(super) fn parse<T>(
        &mut self,
        value: &Text,
        field: impl FieldPath,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        parse(value.get_ref()).map_err(|message| self.error(value.span(), field, message)).ok()
    }

    /// Parses an optional value; absent or wrong, it is `default` (wrong is reported).
    pub(super) fn parse_or<T>(
        &mut self,
        value: Option<&Text>,
        field: impl FieldPath,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> T {
        match value {
            Some(value) => self.parse(value, field, parse).unwrap_or(default),
            None => default,
        }
    }

    /// Finds the item `name` refers to, or reports the unknown name with the names
    /// allowed. `scope` narrows the search for the message, e.g. ` on site "primary"`.
    pub(super) fn lookup<'d, T: Named>(
        &mut self,
        catalog: &Catalog<'d, T>,
        name: &Text,
        field: impl FieldPath,
        noun: Noun,
        scope: impl FieldPath,
    ) -> Option<&'d T> {
        let found = catalog.get(name.get_ref());
        if found.is_none() {
            let names = list(catalog.items.iter().map(|item| item.name().get_ref().as_str()));
            let scope = scope.path();
            let whose = if scope.is_empty() { "known" } else { "its" };
            let message =
                format!("unknown {} {:?}{scope} ({whose} {}: {names})", noun.0, name.get_ref(), noun.plural());
            self.error(name.span(), field, message);
        }
        found
    }

    /// Remembers where `key` first appeared; when it appears again, reports it here with
    /// `message(line of the first)`.
    pub(super) fn once<K: Hash + Eq>(
        &mut self,
        seen: &mut HashMap<K, usize>,
        key: K,
        span: Range<usize>,
        field: impl FieldPath,
        message: impl FnOnce(usize) -> String,
    ) {
        match seen.get(&key) {
            Some(&first) => {
                let first_line = self.line_of(first);
                self.error(span, field, message(first_line));
            }
            None => {
                seen.insert(key, span.start);
            }
        }
    }

    /// Names must be unique among `items` (within `scope`): reports each repeat.
    pub(super) fn unique<T: Named>(&mut self, items: &[T], noun: Noun, scope: &str, field: impl Fn(&T) -> String) {
        let mut seen = HashMap::new();
        for item in items {
            let name = item.name();
            self.once(&mut seen, name.get_ref().as_str(), name.span(), field(item), |line| {
                format!("duplicate {} {:?}{scope}: it is already defined on line {line}", noun.0, name.get_ref())
            });
        }
    }
}

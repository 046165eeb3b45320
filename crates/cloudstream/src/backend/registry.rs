//! The registry of providers: which URL scheme opens which backend, and which cargo feature
//! builds it. The table itself is [`super::providers`]; this file is its machinery.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::Backend;
use crate::url::ProviderUrl;
use crate::Result;

/// A connection to a backend, under way.
pub(crate) type Opening = BoxFuture<'static, Result<Arc<dyn Backend>>>;

/// How a backend of this build is checked and opened from its URL.
#[derive(Clone, Copy)]
pub(crate) struct Constructor {
    /// Checks the URL's location and options without connecting.
    pub check: fn(&ProviderUrl) -> Result<()>,
    /// Connects.
    pub open: fn(ProviderUrl) -> Opening,
}

/// Whether this build has a provider's backend.
#[derive(Clone, Copy)]
pub(crate) enum Build {
    /// Always built.
    Always(Constructor),
    /// Built with a cargo feature: `Some` when this build has it.
    Feature(&'static str, Option<Constructor>),
    /// Named by the spec, its backend not written yet.
    /// (Every provider is built now; kept for the next one named before it is.)
    #[allow(dead_code)]
    Planned,
}

/// One provider: the URL schemes it answers, and its backend.
#[derive(Clone, Copy)]
pub struct Provider {
    /// The URL schemes (`kinesis`; `http` and `https`).
    pub schemes: &'static [&'static str],
    /// What it is, for listings (`AWS Kinesis Data Streams`).
    pub describes: &'static str,
    /// Whether and how this build has it.
    pub(crate) build: Build,
}

impl Provider {
    /// The cargo feature that builds it; `None` for those always built (and those to come).
    pub fn feature(&self) -> Option<&'static str> {
        match self.build {
            Build::Feature(feature, _) => Some(feature),
            Build::Always(_) | Build::Planned => None,
        }
    }

    /// Whether this build can open it.
    pub fn is_built(&self) -> bool {
        matches!(self.build, Build::Always(_) | Build::Feature(_, Some(_)))
    }
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let build = match self.build {
            Build::Always(_) => "always",
            Build::Feature(feature, Some(_)) => feature,
            Build::Feature(_, None) => "not built",
            Build::Planned => "planned",
        };
        f.debug_struct("Provider")
            .field("schemes", &self.schemes)
            .field("describes", &self.describes)
            .field("build", &build)
            .finish()
    }
}

/// `Some(constructor)` of module `$module` when cargo feature `$feature` is on, else `None`.
/// The module's `check(&ProviderUrl)` and `open(ProviderUrl)` are its constructor.
macro_rules! built_with {
    ($feature:literal, $module:ident) => {{
        #[cfg(feature = $feature)]
        let built = Some($crate::backend::registry::Constructor {
            check: $module::check,
            open: |url| Box::pin($module::open(url)),
        });
        #[cfg(not(feature = $feature))]
        let built = None;
        $crate::backend::registry::Build::Feature($feature, built)
    }};
}
pub(crate) use built_with;

/// The constructor of the backend a URL's scheme names; a clear error for a scheme nobody
/// answers, one whose backend this build leaves out, or one not written yet.
pub(crate) fn constructor(url: &ProviderUrl) -> Result<Constructor> {
    constructor_in(&super::providers(), url)
}

fn constructor_in(providers: &[Provider], url: &ProviderUrl) -> Result<Constructor> {
    let scheme = url.scheme();
    let Some(provider) = providers.iter().find(|p| p.schemes.contains(&scheme)) else {
        let known: Vec<&str> = providers.iter().flat_map(|p| p.schemes).copied().collect();
        return Err(url.invalid(format!(
            "unknown scheme {scheme:?}; known: {}",
            known.join(", ")
        )));
    };
    match provider.build {
        Build::Always(c) | Build::Feature(_, Some(c)) => Ok(c),
        Build::Feature(feature, None) => Err(url.invalid(format!(
            "this build has no {scheme} backend: enable the `{feature}` feature of the cloudstream crate"
        ))),
        Build::Planned => Err(url.invalid(format!(
            "the {scheme} backend ({}) is not available in this build yet: it is still to be written",
            provider.describes
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url::parse_url;

    fn error(providers: &[Provider], url: &str) -> String {
        let url = parse_url(url).expect("url");
        match constructor_in(providers, &url) {
            Ok(_) => panic!("{url:?} has a constructor"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_backend_left_out_of_the_build_names_its_feature() {
        let providers = [
            Provider {
                schemes: &["fancy"],
                describes: "a backend this build leaves out",
                build: Build::Feature("fancy", None),
            },
            Provider {
                schemes: &["later"],
                describes: "a backend to come",
                build: Build::Planned,
            },
        ];
        let left_out = error(&providers, "fancy://x");
        assert!(
            left_out.contains("enable the `fancy` feature"),
            "{left_out}"
        );
        let planned = error(&providers, "later://x");
        assert!(
            planned.contains("not available in this build yet"),
            "{planned}"
        );
        let unknown = error(&providers, "odd://x");
        assert!(unknown.contains("known: fancy, later"), "{unknown}");
    }

    #[test]
    fn every_scheme_has_one_provider() {
        let providers = crate::backend::providers();
        let mut schemes: Vec<&str> = providers.iter().flat_map(|p| p.schemes).copied().collect();
        let all = schemes.len();
        schemes.sort_unstable();
        schemes.dedup();
        assert_eq!(schemes.len(), all, "a scheme is registered twice");
    }
}

//! `RUST_LOG`: which entries are written, by target and severity.

use super::line::Severity;

/// The lowest severity written for a target; `None` = nothing (`off`).
type Level = Option<Severity>;

/// `RUST_LOG`, read the way `env_logger` and `tracing`'s `EnvFilter` read their plain
/// directives: comma-separated `level` (the default) and `target=level` items, where a target
/// covers itself and its `::` children and the longest matching target wins. Levels: `off`,
/// `error`, `warn`, `info`, `debug`, `trace` (= `debug`). Unreadable items are ignored. Without a
/// bare level the default is `info`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Filter {
    default: Level,
    directives: Vec<(String, Level)>,
}

impl Filter {
    pub(super) fn parse(spec: &str) -> Filter {
        let mut filter = Filter {
            default: Some(Severity::Info),
            directives: Vec::new(),
        };
        for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item.split_once('=') {
                Some((target, level)) => {
                    if let Some(level) = parse_level(level) {
                        filter.directives.push((target.trim().to_owned(), level));
                    }
                }
                None => {
                    if let Some(level) = parse_level(item) {
                        filter.default = level;
                    }
                }
            }
        }
        filter
    }

    fn level(&self, target: &str) -> Level {
        self.directives
            .iter()
            .filter(|(t, _)| {
                target == t
                    || target
                        .strip_prefix(t.as_str())
                        .is_some_and(|rest| rest.starts_with("::"))
            })
            .max_by_key(|(t, _)| t.len())
            .map_or(self.default, |(_, level)| *level)
    }

    pub(super) fn enabled(&self, target: &str, severity: Severity) -> bool {
        self.level(target).is_some_and(|min| severity >= min)
    }
}

fn parse_level(word: &str) -> Option<Level> {
    Some(match word.trim().to_ascii_lowercase().as_str() {
        "off" => None,
        "error" => Some(Severity::Error),
        "warn" | "warning" => Some(Severity::Warning),
        "info" => Some(Severity::Info),
        "debug" | "trace" => Some(Severity::Debug),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::target;

    #[test]
    fn rust_log_honours_target_directives() {
        let f = Filter::parse("debug,hyper=warn");
        assert_eq!(f.level(target::HOST), Some(Severity::Debug));
        assert_eq!(f.level("hyper"), Some(Severity::Warning));
        assert_eq!(f.level("hyper::client"), Some(Severity::Warning));
        assert_eq!(f.level("hyperx"), Some(Severity::Debug));

        let f = Filter::parse("warn,ion_host::guest=info");
        assert_eq!(f.level(target::HOST), Some(Severity::Warning));
        assert_eq!(f.level(target::ACCESS), Some(Severity::Warning));
        assert_eq!(f.level(target::GUEST), Some(Severity::Info));

        // Without a bare level the default stays info; the longest target wins.
        let f = Filter::parse("ion_host=error, ion_host::access=off");
        assert_eq!(f.level("elsewhere"), Some(Severity::Info));
        assert_eq!(f.level(target::HOST), Some(Severity::Error));
        assert_eq!(f.level(target::GUEST), Some(Severity::Error));
        assert_eq!(f.level(target::ACCESS), None);
        assert!(!f.enabled(target::ACCESS, Severity::Emergency));

        assert_eq!(Filter::parse("ERROR").level("x"), Some(Severity::Error));
        assert_eq!(Filter::parse("trace").level("x"), Some(Severity::Debug));
        assert_eq!(Filter::parse("off").level("x"), None);
        // Unreadable items are ignored.
        assert_eq!(Filter::parse("loud,x=y,").level("x"), Some(Severity::Info));
        assert_eq!(Filter::parse(""), Filter::parse("info"));
    }
}

//! The defenses and attacks every evaluation job lists (`[[eval]]`, `[[cifar_eval]]`,
//! `[[robustness]]`): their TOML forms, each kind's keys with their defaults
//! (docs/ARCHITECTURE.md sections 5 and 6), and the checks that a combination means what it
//! says (BPDA and transfer need a stochastic defense; SAP needs at least one draw on the
//! network's smallest defense point).

use std::ops::Range;
use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{ManifestError, Resolver};
use crate::attack::{Attack, AttackKind, Backward, Loss, Source};
use crate::defense::{Defense, Sampling};

/// An attack without its radius, as written under `attack = { ... }`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AttackSpec {
    /// FGSM or PGD with its parameters.
    #[serde(flatten)]
    pub kind: AttackKind,
    /// Passes per gradient estimate.
    pub gradient_samples: u32,
    /// The loss maximised.
    pub loss: Loss,
    /// How the backward pass treats the defense points.
    pub backward: Backward,
    /// Where the gradients come from.
    pub source: Source,
    /// The surrogate network of `source = "checkpoint"` (safetensors, relative to the
    /// manifest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}

impl AttackSpec {
    /// The attack at radius `lambda`.
    pub fn at(&self, lambda: f64) -> Attack {
        Attack {
            kind: self.kind,
            lambda,
            gradient_samples: self.gradient_samples,
            loss: self.loss,
            backward: self.backward,
            source: self.source,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefense {
    kind: Spanned<String>,
    frac: Option<Spanned<f64>>,
    sampling: Option<Sampling>,
    p: Option<Spanned<f64>>,
    sigma: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAttack {
    kind: Spanned<String>,
    gradient_samples: Option<Spanned<u32>>,
    steps: Option<Spanned<u32>>,
    step_size: Option<Spanned<f64>>,
    random_start: Option<bool>,
    iterations: Option<Spanned<u32>>,
    restarts: Option<Spanned<u32>>,
    loss: Option<Spanned<String>>,
    backward: Option<Spanned<String>>,
    source: Option<Spanned<String>>,
    checkpoint: Option<Spanned<String>>,
}

/// The smallest defense point (post-ReLU map, per example) of the network a job defends.
pub(super) struct SmallestMap {
    /// Units in the map.
    pub units: u64,
    /// Which layer it is, for messages.
    pub what: &'static str,
}

/// The Nature CNN's smallest defense point: its 512-unit fully connected layer.
pub(super) const NATURE_SMALLEST: SmallestMap = SmallestMap {
    units: 512,
    what: "the Nature CNN's fully connected layer",
};

/// ResNet-20's smallest defense point: a 64 x 8 x 8 map of its last stage.
pub(super) const RESNET20_SMALLEST: SmallestMap = SmallestMap {
    units: 64 * 8 * 8,
    what: "ResNet-20's last-stage maps (64 x 8 x 8)",
};

impl Resolver<'_> {
    /// A job's `defenses`: a non-empty list, each checked; SAP's `frac` must give at least
    /// one draw on `smallest`, the network's smallest defense point.
    pub(super) fn resolve_defenses(
        &self,
        prefix: &str,
        raw: &Spanned<Vec<Spanned<RawDefense>>>,
        smallest: &SmallestMap,
    ) -> Result<Vec<Defense>, ManifestError> {
        if raw.get_ref().is_empty() {
            let msg = "the list is empty; name at least one defense".to_owned();
            return Err(self.error(raw.span(), format!("{prefix}.defenses"), msg));
        }
        raw.get_ref()
            .iter()
            .enumerate()
            .map(|(d, r)| self.resolve_defense(&format!("{prefix}.defenses[{d}]"), r, smallest))
            .collect()
    }

    /// A job's `attacks`: a non-empty list, each checked; `stochastic` says whether any of
    /// the job's defenses has a stochastic point (BPDA and transfer need one).
    pub(super) fn resolve_attacks(
        &self,
        prefix: &str,
        raw: &Spanned<Vec<Spanned<RawAttack>>>,
        stochastic: bool,
    ) -> Result<Vec<AttackSpec>, ManifestError> {
        if raw.get_ref().is_empty() {
            let msg = format!(
                "the list is empty; allowed attacks: {}",
                ATTACK_KINDS.join(", ")
            );
            return Err(self.error(raw.span(), format!("{prefix}.attacks"), msg));
        }
        raw.get_ref()
            .iter()
            .enumerate()
            .map(|(a, r)| self.resolve_attack(&format!("{prefix}.attacks[{a}]"), r, stochastic))
            .collect()
    }

    pub(super) fn resolve_defense(
        &self,
        key: &str,
        raw: &Spanned<RawDefense>,
        smallest: &SmallestMap,
    ) -> Result<Defense, ManifestError> {
        let r = raw.get_ref();
        let k = |s: &str| format!("{key}.{s}");
        let kind = r.kind.get_ref().as_str();
        // Which keys each kind takes; any other present key is an error naming it.
        let (defense, takes): (Defense, &[&str]) = match kind {
            "dense" => (Defense::Dense, &[]),
            "sap" => {
                let frac = r.frac.as_ref().map_or(1.0, |v| *v.get_ref());
                let sampling = r.sampling.unwrap_or_default();
                (Defense::Sap { frac, sampling }, &["frac", "sampling"])
            }
            "dropout" => {
                let Some(p) = &r.p else {
                    return Err(self.error(raw.span(), key.into(), "dropout needs `p`".into()));
                };
                (Defense::Dropout { p: *p.get_ref() }, &["p"])
            }
            "gaussian" => {
                let Some(s) = &r.sigma else {
                    let msg = "gaussian needs `sigma`".to_owned();
                    return Err(self.error(raw.span(), key.into(), msg));
                };
                (
                    Defense::Gaussian {
                        sigma: *s.get_ref(),
                    },
                    &["sigma"],
                )
            }
            other => {
                let allowed = ["dense", "sap", "dropout", "gaussian"];
                let msg = format!(
                    "unknown defense `{other}`; allowed: {}{}",
                    allowed.join(", "),
                    super::suggestion(other, allowed)
                );
                return Err(self.error(r.kind.span(), k("kind"), msg));
            }
        };
        let present: [(&str, Option<Range<usize>>); 4] = [
            ("frac", r.frac.as_ref().map(Spanned::span)),
            ("sampling", r.sampling.map(|_| raw.span())),
            ("p", r.p.as_ref().map(Spanned::span)),
            ("sigma", r.sigma.as_ref().map(Spanned::span)),
        ];
        for (name, span) in present {
            if let Some(span) = span {
                if !takes.contains(&name) {
                    let msg = format!(
                        "`{name}` is not a parameter of {kind}; {kind} takes {}",
                        if takes.is_empty() {
                            "none".to_owned()
                        } else {
                            takes.join(", ")
                        }
                    );
                    return Err(self.error(span, k(name), msg));
                }
            }
        }
        if let Err(e) = defense.validate() {
            let (name, span) = match defense {
                Defense::Sap { .. } => ("frac", r.frac.as_ref().map(Spanned::span)),
                Defense::Dropout { .. } => ("p", r.p.as_ref().map(Spanned::span)),
                _ => ("sigma", r.sigma.as_ref().map(Spanned::span)),
            };
            return Err(self.error(span.unwrap_or(raw.span()), k(name), e.to_string()));
        }
        if let Defense::Sap { frac, .. } = defense {
            let n = smallest.units;
            if crate::defense::sap::draws(frac, n as usize) < 1 {
                let msg = format!(
                    "frac = {frac} gives r = round({frac} x {n}) = 0 draws on {} ({n} units), \
                     which would prune it to zero; allowed: frac >= {} on this network",
                    smallest.what,
                    0.5 / n as f64
                );
                let span = r.frac.as_ref().map_or(raw.span(), Spanned::span);
                return Err(self.error(span, k("frac"), msg));
            }
        }
        Ok(defense)
    }

    /// One attack: its kind's keys with their defaults (docs/ARCHITECTURE.md section 6), and the options
    /// every kind takes (`gradient_samples`, `loss`, `backward`, `source`); `stochastic` says
    /// whether any of the job's defenses has a stochastic point.
    pub(super) fn resolve_attack(
        &self,
        key: &str,
        raw: &Spanned<RawAttack>,
        stochastic: bool,
    ) -> Result<AttackSpec, ManifestError> {
        let r = raw.get_ref();
        let k = |s: &str| format!("{key}.{s}");
        let name = r.kind.get_ref().as_str();
        // EOT-PGD and APGD average gradients over draws of the defense by default (APGD:
        // AutoAttack's `version = 'rand'`).
        let default_samples = match name {
            "eot-pgd" => 10,
            "apgd" => 20,
            _ => 1,
        };
        let gradient_samples = self.or_positive(
            &r.gradient_samples,
            k("gradient_samples"),
            default_samples,
            "an integer >= 1",
        )?;
        // Which kind-specific keys each kind takes; any other present key is an error.
        let present: [(&str, Option<Range<usize>>); 5] = [
            ("steps", r.steps.as_ref().map(Spanned::span)),
            ("step_size", r.step_size.as_ref().map(Spanned::span)),
            ("random_start", r.random_start.map(|_| raw.span())),
            ("iterations", r.iterations.as_ref().map(Spanned::span)),
            ("restarts", r.restarts.as_ref().map(Spanned::span)),
        ];
        let takes: &[&str] = match name {
            "fgsm" => &[],
            "pgd" | "eot-pgd" => &["steps", "step_size", "random_start"],
            "apgd" => &["iterations", "restarts", "random_start"],
            other => {
                let msg = format!(
                    "unknown attack `{other}`; allowed: {}{}",
                    ATTACK_KINDS.join(", "),
                    super::suggestion(other, ATTACK_KINDS)
                );
                return Err(self.error(r.kind.span(), k("kind"), msg));
            }
        };
        for (key_name, span) in present {
            if let Some(span) = span {
                if !takes.contains(&key_name) {
                    let msg = format!(
                        "`{key_name}` is not a parameter of {name}; {name} takes {}",
                        if takes.is_empty() {
                            "none of steps, step_size, random_start, iterations, restarts"
                                .to_owned()
                        } else {
                            takes.join(", ")
                        }
                    );
                    return Err(self.error(span, k(key_name), msg));
                }
            }
        }
        let kind = match name {
            "fgsm" => AttackKind::Fgsm,
            "apgd" => AttackKind::Apgd {
                iterations: self.or_positive(
                    &r.iterations,
                    k("iterations"),
                    100,
                    "an integer >= 1",
                )?,
                restarts: self.or_positive(&r.restarts, k("restarts"), 1, "an integer >= 1")?,
                random_start: r.random_start.unwrap_or(true),
            },
            _ => {
                let eot = name == "eot-pgd";
                let steps = match &r.steps {
                    None if eot => 20,
                    None => 10,
                    Some(v) => self.positive(v, k("steps"), "an integer >= 1")?,
                };
                let step_size = match &r.step_size {
                    None => None,
                    Some(v) => {
                        Some(self.positive(v, k("step_size"), "a step > 0 in pixel units")?)
                    }
                };
                let random_start = r.random_start.unwrap_or(eot);
                if eot {
                    AttackKind::EotPgd {
                        steps,
                        step_size,
                        random_start,
                    }
                } else {
                    AttackKind::Pgd {
                        steps,
                        step_size,
                        random_start,
                    }
                }
            }
        };
        let choice = |v: &Option<Spanned<String>>, key_name: &str, allowed: &[&str]| match v {
            None => Ok(None),
            Some(v) if allowed.contains(&v.get_ref().as_str()) => Ok(Some(v.get_ref().clone())),
            Some(v) => {
                let msg = format!(
                    "unknown {key_name} `{}`; allowed: {}{}",
                    v.get_ref(),
                    allowed.join(", "),
                    super::suggestion(v.get_ref(), allowed.iter().copied())
                );
                Err(self.error(v.span(), k(key_name), msg))
            }
        };
        let losses: Vec<&str> = Loss::ALL.iter().map(|l| l.name()).collect();
        let loss = choice(&r.loss, "loss", &losses)?
            .and_then(|l| Loss::from_name(&l))
            .unwrap_or_default();
        let backward = match choice(&r.backward, "backward", &["mask", "identity"])?.as_deref() {
            Some("identity") => Backward::Identity,
            _ => Backward::Mask,
        };
        let sources = ["defended", "dense", "checkpoint"];
        let source = match choice(&r.source, "source", &sources)?.as_deref() {
            Some("dense") => Source::Dense,
            Some("checkpoint") => Source::Checkpoint,
            _ => Source::Defended,
        };
        let checkpoint = match (&r.checkpoint, source) {
            (None, Source::Checkpoint) => {
                let span = r.source.as_ref().map_or(raw.span(), Spanned::span);
                let msg = "source = \"checkpoint\" needs `checkpoint`, the surrogate network's \
                           safetensors file (relative to the manifest), of the same \
                           architecture as the attacked one"
                    .to_owned();
                return Err(self.error(span, k("source"), msg));
            }
            (Some(c), Source::Checkpoint) => {
                let base = self.path.parent().unwrap_or(Path::new("."));
                let allowed = "a safetensors file of a network of the attacked one's \
                               architecture (the transfer attack's surrogate)";
                self.checkpoint_file(&base.join(c.get_ref()), c.span(), k("checkpoint"), allowed)?;
                Some(c.get_ref().clone())
            }
            (Some(c), _) => {
                let msg = "`checkpoint` names a transfer attack's surrogate network; it goes \
                           with source = \"checkpoint\""
                    .to_owned();
                return Err(self.error(c.span(), k("checkpoint"), msg));
            }
            (None, _) => None,
        };
        if backward == Backward::Identity {
            let span = r.backward.as_ref().map_or(raw.span(), Spanned::span);
            if source.is_transfer() {
                let msg = format!(
                    "backward = \"identity\" differentiates the defended network's stochastic \
                     points, and a transfer attack (source = \"{}\") takes its gradients from a \
                     network without them; allowed: one of the two",
                    source.name()
                );
                return Err(self.error(span, k("backward"), msg));
            }
            if !stochastic {
                let msg = "backward = \"identity\" needs a defense with a stochastic point \
                           (sap, dropout with p > 0, gaussian with sigma > 0); every defense \
                           of this job is deterministic, so it would be the plain gradient"
                    .to_owned();
                return Err(self.error(span, k("backward"), msg));
            }
        }
        if source == Source::Dense && !stochastic {
            let span = r.source.as_ref().map_or(raw.span(), Spanned::span);
            let msg = "source = \"dense\" transfers a perturbation from the dense network to \
                       a defended one; every defense of this job is deterministic, so it \
                       would be the white-box attack"
                .to_owned();
            return Err(self.error(span, k("source"), msg));
        }
        Ok(AttackSpec {
            kind,
            gradient_samples,
            loss,
            backward,
            source,
            checkpoint,
        })
    }
}

/// The attack kinds a manifest names.
pub(super) const ATTACK_KINDS: [&str; 4] = ["fgsm", "pgd", "eot-pgd", "apgd"];

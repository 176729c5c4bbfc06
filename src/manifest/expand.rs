//! The plan's expanders, one per family of jobs, called in plan order by
//! [`Manifest::plan`].

use super::plan::{
    AgentCell, CellKind, CifarEvalCell, CifarTrainCell, NetworkSource, PlanCell, RobustnessCell,
};
use super::{
    AgentEval, Cell, CifarEvalJob, Condition, EvalJob, GameId, Manifest, PolicyKind, Variant,
};
use crate::defense::Defense;
use crate::env::Game;

impl Manifest {
    /// Every cell in plan order: training cells (Double DQN, then CIFAR-10), random-policy
    /// cells (the `[[eval]]` random jobs, then one baseline per agent game and seed unless
    /// an identical cell exists), agent cells (job, game, network, seed, defense, attack,
    /// lambda; the dense clean reference first when the grid lacks it), robustness cells,
    /// then CIFAR-10 evaluation cells.
    pub fn plan(&self) -> Vec<PlanCell> {
        let mut p = Plan::default();
        for t in self.train_cells() {
            p.push(CellKind::Train(t), Vec::new());
        }
        p.cifar_training(self);
        for cell in self.cells() {
            p.push_episodes(cell);
        }
        let mut agents = Vec::new();
        for (j, job) in self.eval.iter().enumerate() {
            if let Some(grid) = &job.agent {
                agents.extend(p.agent_grid(j, job, grid));
            }
        }
        for (cell, deps) in agents {
            p.push(CellKind::Agent(cell), deps);
        }
        for (j, job) in self.robustness.iter().enumerate() {
            for &seed in &job.seeds {
                let kind = CellKind::Robustness(RobustnessCell {
                    job: j,
                    task: job.task,
                    seed,
                });
                p.push(kind, Vec::new());
            }
        }
        let mut cifar = Vec::new();
        for (j, job) in self.cifar_eval.iter().enumerate() {
            cifar.extend(p.cifar_grid(j, job));
        }
        for (cell, deps) in cifar {
            p.push(CellKind::CifarEval(cell), deps);
        }
        p.cells
    }
}

/// A plan being built: cells numbered in the order they are pushed.
#[derive(Default)]
struct Plan {
    cells: Vec<PlanCell>,
}

impl Plan {
    /// Appends a cell; returns its number.
    fn push(&mut self, kind: CellKind, deps: Vec<usize>) -> usize {
        let index = self.cells.len();
        self.cells.push(PlanCell { index, kind, deps });
        index
    }

    /// Appends a random-policy cell, numbered here.
    fn push_episodes(&mut self, mut cell: Cell) -> usize {
        cell.index = self.cells.len();
        self.push(CellKind::Episodes(cell), Vec::new())
    }

    /// One cell per `[[cifar_train]]` job x variant x seed.
    fn cifar_training(&mut self, m: &Manifest) {
        for (j, job) in m.cifar_train.iter().enumerate() {
            for &variant in &job.variants {
                for &seed in &job.seeds {
                    let cell = CifarTrainCell {
                        job: j,
                        settings: job.clone(),
                        variant,
                        seed,
                    };
                    self.push(CellKind::CifarTrain(cell), Vec::new());
                }
            }
        }
    }

    /// The networks of an agent job's game: the matching training cells, or its file.
    fn agent_networks(&self, grid: &AgentEval, game: Game, name: &str) -> Vec<NetworkSource> {
        match &grid.train {
            Some(train) => self
                .cells
                .iter()
                .filter_map(|c| match &c.kind {
                    CellKind::Train(t) if t.job.name == *train && t.game == GameId::Atari(game) => {
                        Some(NetworkSource::Train {
                            cell: c.index,
                            id: t.id(),
                            seed: t.seed,
                        })
                    }
                    _ => None,
                })
                .collect(),
            None => vec![NetworkSource::File(grid.checkpoints[name].clone())],
        }
    }

    /// The random-policy baseline of an agent game and seed: an identical existing cell,
    /// or a new one.
    fn baseline(&mut self, baseline_cell: Cell) -> usize {
        let existing = self.cells.iter().position(|c| match &c.kind {
            CellKind::Episodes(e) => {
                Cell {
                    index: 0,
                    job: baseline_cell.job,
                    ..e.clone()
                } == baseline_cell
            }
            _ => false,
        });
        existing.unwrap_or_else(|| self.push_episodes(baseline_cell))
    }

    /// Agent job `j`: pushes its random baselines and returns its agent cells with their
    /// dependencies (pushed after every job's baselines).
    fn agent_grid(
        &mut self,
        j: usize,
        job: &EvalJob,
        grid: &AgentEval,
    ) -> Vec<(AgentCell, Vec<usize>)> {
        let preset = job.preset.expect("agent jobs are Atari");
        let settings = job.env.expect("agent jobs are Atari");
        let mut agents = Vec::new();
        for name in &job.games {
            let game = Game::from_name(name).expect("checked game");
            let networks = self.agent_networks(grid, game, name);
            for &seed in &job.seeds {
                let baseline = self.baseline(Cell {
                    index: 0,
                    job: j,
                    game: GameId::Atari(game),
                    preset: Some(preset),
                    settings: Some(settings),
                    policy: PolicyKind::Random,
                    episodes: grid.random_episodes,
                    seed,
                });
                for network in &networks {
                    let deps = network.deps();
                    let base = AgentCell {
                        job: j,
                        job_name: job.name.clone(),
                        game,
                        preset,
                        settings,
                        network: network.clone(),
                        condition: Condition::clean(Defense::Dense, seed),
                        samples: grid.samples,
                        max_batch: grid.max_batch,
                        parallel_episodes: grid.parallel_episodes.min(job.episodes),
                        record: grid.record,
                        epsilon: grid.epsilon,
                        episodes: job.episodes,
                        baseline,
                    };
                    if !grid.has_dense_clean() {
                        agents.push((base.clone(), deps.clone()));
                    }
                    for &defense in &grid.defenses {
                        for spec in &grid.attacks {
                            for &lambda in &grid.lambdas {
                                let clean = Condition::clean(defense, seed);
                                let cell = AgentCell {
                                    condition: clean.attacked(spec, lambda),
                                    ..base.clone()
                                };
                                agents.push((cell, deps.clone()));
                            }
                        }
                    }
                }
            }
        }
        agents
    }

    /// (label, network, trained_by) of every network a `[[cifar_eval]]` job evaluates.
    fn cifar_networks(&self, job: &CifarEvalJob) -> Vec<CifarNetwork> {
        match &job.train {
            Some(train) => self
                .cells
                .iter()
                .filter_map(|c| match &c.kind {
                    CellKind::CifarTrain(t)
                        if t.settings.name == *train && job.variants.contains(&t.variant) =>
                    {
                        let adv = (t.variant == Variant::Adv)
                            .then(|| t.settings.adv())
                            .flatten();
                        Some((
                            t.variant.name().to_owned(),
                            NetworkSource::Train {
                                cell: c.index,
                                id: c.id(),
                                seed: t.seed,
                            },
                            Some((train.clone(), adv)),
                        ))
                    }
                    _ => None,
                })
                .collect(),
            None => job
                .checkpoints
                .iter()
                .map(|(label, file)| (label.clone(), NetworkSource::File(file.clone()), None))
                .collect(),
        }
    }

    /// The cells of `[[cifar_eval]]` job `j` with their dependencies.
    fn cifar_grid(&self, j: usize, job: &CifarEvalJob) -> Vec<(CifarEvalCell, Vec<usize>)> {
        let mut cifar = Vec::new();
        for (label, network, trained_by) in self.cifar_networks(job) {
            let deps = network.deps();
            for &seed in &job.seeds {
                for &defense in &job.defenses {
                    let base = CifarEvalCell {
                        job: j,
                        job_name: job.name.clone(),
                        label: label.clone(),
                        network: network.clone(),
                        trained_by: trained_by.clone(),
                        data: job.data.clone(),
                        examples: job.examples,
                        batch_size: job.batch_size,
                        samples: job.samples,
                        max_batch: job.max_batch,
                        condition: Condition::clean(defense, seed),
                    };
                    // Lambda 0 leaves every input as it is: one clean cell serves all attacks.
                    if job.lambdas.contains(&0.0) {
                        cifar.push((base.clone(), deps.clone()));
                    }
                    for spec in &job.attacks {
                        for &lambda in job.lambdas.iter().filter(|&&l| l > 0.0) {
                            let cell = CifarEvalCell {
                                condition: base.condition.attacked(spec, lambda),
                                ..base.clone()
                            };
                            cifar.push((cell, deps.clone()));
                        }
                    }
                }
            }
        }
        cifar
    }
}

/// A CIFAR-10 network to evaluate: (label, source, (training job, adv settings)).
type CifarNetwork = (String, NetworkSource, Option<(String, Option<(f64, f64)>)>);

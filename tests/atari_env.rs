//! The Atari environment on real ROMs: determinism, sticky actions, no-op starts, the
//! episode cap and life loss.

use sap_harness::env::{
    ActionSet, AtariEnv, AtariSettings, Environment, Game, Mode, Observation, Preset, Step,
};

fn game(name: &str) -> Game {
    Game::from_name(name).unwrap()
}

fn pixels(obs: &Observation) -> &[u8] {
    match obs {
        Observation::Pixels(p) => p,
        Observation::Features(_) => panic!("Atari observations are pixels"),
    }
}

/// Plays `steps` steps of a fixed action cycle; returns (rewards, observations).
fn rollout(env: &mut AtariEnv, seed: u64, steps: usize) -> (Vec<f64>, Vec<Vec<u8>>) {
    let mut obs = vec![pixels(&env.reset(seed).unwrap()).to_vec()];
    let mut rewards = Vec::new();
    for t in 0..steps {
        let s: Step = env.step((t * 7 + t / 5) % env.num_actions());
        rewards.push(s.reward);
        obs.push(pixels(&s.obs).to_vec());
        if s.terminated || s.truncated {
            break;
        }
    }
    (rewards, obs)
}

#[test]
fn same_seed_and_actions_give_identical_rewards_and_frames_whatever_ran_before() {
    let settings = Preset::DopamineV5.settings();
    let mut env = AtariEnv::new(game("Pong"), settings, Mode::Eval, 3).unwrap();
    let first = rollout(&mut env, 42, 400);
    rollout(&mut env, 7, 250); // another episode in between
    let again = rollout(&mut env, 42, 400);
    assert_eq!(first, again);
    // A fresh environment with the same construction seed agrees too.
    let mut other = AtariEnv::new(game("Pong"), settings, Mode::Eval, 3).unwrap();
    assert_eq!(first, rollout(&mut other, 42, 400));
}

#[test]
fn different_seeds_differ_under_sticky_actions_and_agree_without_them() {
    let sticky = Preset::DopamineV5.settings();
    let mut env = AtariEnv::new(game("Breakout"), sticky, Mode::Eval, 0).unwrap();
    let a = rollout(&mut env, 1, 300);
    let b = rollout(&mut env, 2, 300);
    assert_ne!(a.1, b.1, "sticky actions should make seeds 1 and 2 diverge");

    // Without sticky actions or no-op starts the emulator is deterministic: the episode
    // seed has nothing left to change.
    let plain = AtariSettings {
        repeat_action_probability: 0.0,
        ..sticky
    };
    let mut env = AtariEnv::new(game("Breakout"), plain, Mode::Eval, 0).unwrap();
    assert_eq!(rollout(&mut env, 1, 300), rollout(&mut env, 2, 300));
}

#[test]
fn observations_are_four_stacked_84_by_84_frames_starting_from_zeros() {
    let mut env =
        AtariEnv::new(game("Pong"), Preset::DopamineV5.settings(), Mode::Eval, 0).unwrap();
    assert_eq!(env.observation_shape(), vec![4, 84, 84]);
    let obs = env.reset(5).unwrap();
    let p = pixels(&obs);
    assert_eq!(p.len(), 4 * 84 * 84);
    let frame = 84 * 84;
    assert!(
        p[..3 * frame].iter().all(|&v| v == 0),
        "older frames start at zero"
    );
    assert!(
        p[3 * frame..].iter().any(|&v| v != 0),
        "the newest frame is the screen"
    );
    // After one step the newest frame moves one slot towards the front.
    let s = env.step(0);
    let q = pixels(&s.obs);
    assert_eq!(&q[2 * frame..3 * frame], &p[3 * frame..]);
}

#[test]
fn the_frame_cap_truncates_without_terminating() {
    let settings = AtariSettings {
        max_episode_frames: 100,
        ..Preset::DopamineV5.settings()
    };
    let mut env = AtariEnv::new(game("Pong"), settings, Mode::Eval, 0).unwrap();
    env.reset(0).unwrap();
    let mut steps = 0;
    let last = loop {
        let s = env.step(1);
        steps += 1;
        if s.terminated || s.truncated {
            break s;
        }
    };
    assert!(last.truncated && !last.terminated && !last.game_over);
    assert_eq!(steps, 25, "100 frames at frame_skip 4");
    assert_eq!(env.episode_frames(), 100);
}

#[test]
fn no_op_starts_run_between_one_and_noop_max_frames_chosen_by_the_seed() {
    let settings = Preset::Nature.settings();
    assert_eq!(settings.noop_max, 30);
    let mut env = AtariEnv::new(game("Pong"), settings, Mode::Eval, 0).unwrap();
    let counts: Vec<u64> = (0..20)
        .map(|seed| {
            env.reset(seed).unwrap();
            env.episode_frames()
        })
        .collect();
    assert!(counts.iter().all(|&c| (1..=30).contains(&c)), "{counts:?}");
    assert!(
        counts.iter().any(|&c| c != counts[0]),
        "the seed should vary the count"
    );
    env.reset(3).unwrap();
    assert_eq!(env.episode_frames(), counts[3]);
}

/// Plays random-ish actions until a life is lost or the game ends; returns that step.
fn until_life_lost(env: &mut AtariEnv, lives_at_start: i32) -> Step {
    for t in 0.. {
        let s = env.step(t % env.num_actions());
        if s.lives < lives_at_start || s.terminated || s.truncated {
            return s;
        }
    }
    unreachable!()
}

#[test]
fn a_lost_life_ends_the_training_episode_but_not_the_game() {
    let settings = Preset::Nature.settings();
    let mut env = AtariEnv::new(game("Breakout"), settings, Mode::Train, 0).unwrap();
    env.reset(1).unwrap();
    let start_lives = env.step(0).lives;
    assert_eq!(start_lives, 5);
    let s = until_life_lost(&mut env, start_lives);
    assert_eq!(s.lives, start_lives - 1);
    assert!(
        s.terminated && !s.game_over,
        "life loss is terminal in training"
    );
    // The next reset continues the same game: the lost life stays lost.
    env.reset(2).unwrap();
    assert_eq!(env.step(0).lives, start_lives - 1);
}

#[test]
fn evaluation_plays_through_lost_lives_with_raw_rewards() {
    let settings = Preset::Nature.settings();
    let mut env = AtariEnv::new(game("Breakout"), settings, Mode::Eval, 0).unwrap();
    assert!(!env.settings().life_loss_terminal && !env.settings().clip_rewards);
    env.reset(1).unwrap();
    let start_lives = env.step(0).lives;
    let s = until_life_lost(&mut env, start_lives);
    assert_eq!(s.lives, start_lives - 1);
    assert!(!s.terminated, "life loss is not terminal in evaluation");
}

#[test]
fn action_sets_are_minimal_or_all_eighteen() {
    let minimal = Preset::DopamineV5.settings();
    let env = AtariEnv::new(game("Pong"), minimal, Mode::Eval, 0).unwrap();
    assert_eq!(env.num_actions(), 6);
    let full = AtariSettings {
        action_set: ActionSet::Full,
        ..minimal
    };
    let env = AtariEnv::new(game("Pong"), full, Mode::Eval, 0).unwrap();
    assert_eq!(env.num_actions(), 18);
}

#[test]
fn every_listed_game_name_maps_back_to_its_game() {
    for g in Game::all() {
        assert_eq!(Game::from_name(g.name()), Some(g));
    }
    assert!(Game::from_name("SpaceInvaders").is_some());
    assert!(Game::from_name("MontezumaRevenge").is_some());
    assert!(Game::from_name("pong").is_none());
}

/// Makes `calls` on `env`: `None` resets with the next seed of `seeds`, `Some(a)` steps with
/// action `a`; returns every step's (reward, lives, observation).
fn replay_calls(
    env: &mut AtariEnv,
    calls: &[Option<usize>],
    seeds: &mut impl Iterator<Item = u64>,
) -> Vec<(f64, i32, Vec<u8>)> {
    let mut out = Vec::new();
    for call in calls {
        match call {
            None => {
                env.reset(seeds.next().unwrap()).unwrap();
            }
            Some(a) => {
                let s = env.step(*a);
                out.push((s.reward, s.lives, pixels(&s.obs).to_vec()));
            }
        }
    }
    out
}

#[test]
fn a_new_environment_making_the_same_calls_continues_exactly_where_the_old_one_stood() {
    // Training under `nature` (no-op starts, lives as episodes, fire on reset) with sticky
    // actions on: everything an actor's checkpoint relies on to rebuild its environments.
    let mut settings = Preset::Nature.settings();
    settings.repeat_action_probability = 0.25;
    settings.fire_on_reset = true;
    let new_env = || AtariEnv::new(game("Breakout"), settings, Mode::Train, 9).unwrap();
    let mut old = new_env();
    let mut calls: Vec<Option<usize>> = vec![None];
    let mut seeds = (100..).step_by(7);
    old.reset(seeds.next().unwrap()).unwrap();
    let mut resets = 1;
    for t in 0..700 {
        let a = (t * 5 + t / 3) % old.num_actions();
        let s = old.step(a);
        calls.push(Some(a));
        if s.terminated || s.truncated {
            calls.push(None);
            old.reset(seeds.next().unwrap()).unwrap();
            resets += 1;
        }
    }
    assert!(resets >= 2, "the calls should cross a lost life");
    let mut fresh = new_env();
    replay_calls(&mut fresh, &calls, &mut (100..).step_by(7));
    // Both continue with the same actions: identical rewards, lives and frames.
    let more: Vec<Option<usize>> = (0..200).map(|t| Some((t * 3) % 4)).collect();
    let a = replay_calls(&mut old, &more, &mut std::iter::empty());
    let b = replay_calls(&mut fresh, &more, &mut std::iter::empty());
    assert!(a == b, "the rebuilt environment diverged");
}

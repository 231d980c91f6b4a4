//! The engine against llama.cpp's reference outputs on the default model (tests/fixtures, copied
//! from shared/ref; see REFERENCE.md there for how they were made).

mod common;

use common::*;
use hearth::sampler::argmax;
use hearth::session::{Engine, Session};
use std::sync::{Arc, OnceLock};

fn engine() -> Option<Arc<Engine>> {
    static E: OnceLock<Option<Arc<Engine>>> = OnceLock::new();
    E.get_or_init(|| model_path().map(|p| Arc::new(Engine::open(&p).expect("load the default model"))))
        .clone()
}

/// Logits at the last prompt position match llama.cpp's full vectors closely.
#[test]
fn last_position_logits_match_llama_cpp() {
    let Some(engine) = engine() else { return };
    let cases = json("logits.json");
    for case in cases["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let prompt = ids(&case["prompt_ids"]);
        let bytes = std::fs::read(fixture(case["full_logits_file"].as_str().unwrap())).unwrap();
        let reference: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let mut s = Session::new(engine.clone(), 256).unwrap();
        s.feed(&prompt).unwrap();
        let ours = s.logits();
        assert_eq!(ours.len(), reference.len());
        let max_diff = ours.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let mean_diff = ours.iter().zip(&reference).map(|(a, b)| (a - b).abs() as f64).sum::<f64>() / ours.len() as f64;
        println!("{name}: max |Δlogit| {max_diff:.4}, mean {mean_diff:.5}, top1 ours {} ref {}", argmax(ours), argmax(&reference));
        assert_eq!(argmax(ours), argmax(&reference), "{name}: top-1 differs");
        assert!(max_diff < 0.25, "{name}: max logit difference {max_diff}");
        assert!(mean_diff < 0.05, "{name}: mean logit difference {mean_diff}");
    }
}

/// Greedy continuations equal llama.cpp's token for token; where one diverges, llama.cpp's own
/// margin between its two best logits at that step must have been small, and few may diverge.
#[test]
fn greedy_continuations_match_llama_cpp() {
    let Some(engine) = engine() else { return };
    let cases = json("greedy.json");
    let cases = cases["cases"].as_array().unwrap();
    let mut diverged = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let prompt = ids(&case["prompt_ids"]);
        let expected = ids(&case["generated_ids"]);
        let margins: Vec<f64> = case["step_top1_minus_top2"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let mut s = Session::new(engine.clone(), 512).unwrap();
        s.feed(&prompt).unwrap();
        let mut got = Vec::new();
        for _ in 0..expected.len() {
            let id = argmax(s.logits());
            got.push(id);
            if engine.tokenizer.is_eog(id) {
                break;
            }
            s.append(&[id]).unwrap();
        }
        match got.iter().zip(&expected).position(|(a, b)| a != b).or((got.len() != expected.len()).then_some(got.len().min(expected.len()))) {
            None => println!("{name}: {} tokens identical", expected.len()),
            Some(step) => {
                diverged += 1;
                let margin = margins.get(step).copied().unwrap_or(f64::NAN);
                println!("{name}: diverges at step {step} of {} (llama.cpp top1-top2 margin there {margin:.4}); ours {:?} ref {:?}",
                    expected.len(), &got[step..(step + 3).min(got.len())], &expected[step..(step + 3).min(expected.len())]);
                assert!(margin < 0.25, "{name}: diverged at step {step} where llama.cpp's margin was {margin} (not a near-tie)");
            }
        }
    }
    println!("{diverged} of {} continuations diverge (each at a near-tie)", cases.len());
    assert!(diverged * 4 <= cases.len(), "{diverged} of {} continuations diverge", cases.len());
}

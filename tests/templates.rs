//! Real models' chat templates (Qwen3, Qwen2.5, Llama 3.1/3.2, Gemma's turns, LFM2.5, SmolLM3) rendered by
//! hearth exactly as Jinja2 renders them in Hugging Face's chat-template environment — the fixture
//! tests/fixtures/templates/templates.json, written by tools/reference/make_template_fixtures.py from the
//! templates llama.cpp keeps. Same clock for both (`strftime_now`), Qwen3's `enable_thinking` on and off,
//! and a template's `raise_exception` as a typed error with its message.

mod common;

use hearth::chat::{ChatTemplate, Message, RenderOptions};
use hearth::Error;

#[test]
fn real_templates_render_as_jinja2_renders_them() {
    let doc = common::json("templates/templates.json");
    let clock = chrono_free_unix(doc["clock"].as_str().unwrap());
    let mut checked = 0;
    for t in doc["templates"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let tmpl = ChatTemplate::from_source(
            t["source"].as_str().unwrap(),
            t["bos"].as_str().unwrap(),
            t["eos"].as_str().unwrap(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        for case in t["cases"].as_array().unwrap() {
            let label = format!("{name} / {}", case["label"].as_str().unwrap());
            let messages: Vec<Message> = serde_json::from_value(case["messages"].clone()).unwrap();
            let opts = RenderOptions {
                enable_thinking: case["extra"]["enable_thinking"].as_bool(),
                now: Some(clock),
            };
            let add_gen = case["add_generation_prompt"].as_bool().unwrap();
            let got = tmpl.render_string_with(&messages, add_gen, &opts);
            match (case.get("expected"), got) {
                (Some(want), Ok(got)) => assert_eq!(got, want.as_str().unwrap(), "{label}"),
                (None, Err(Error::Template(msg))) => {
                    let want = case["error"].as_str().unwrap();
                    assert!(msg.contains(want), "{label}: {msg:?} should say {want:?}");
                }
                (want, got) => panic!("{label}: expected {want:?}, got {got:?}"),
            }
            // The segmented render (template text special, contents plain) says the same thing.
            if let Some(want) = case.get("expected") {
                let segs = tmpl.render_with(&messages, add_gen, &opts).unwrap();
                let joined: String = segs.iter().map(|s| s.text.as_str()).collect();
                assert_eq!(joined, want.as_str().unwrap(), "{label}: segments");
                for s in segs.iter().filter(|s| s.special) {
                    assert!(
                        !s.text.contains("**bold**"),
                        "{label}: user text is never special: {:?}",
                        s.text
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 40, "{checked} cases");
}

#[test]
fn qwen3_thinking_switch_changes_the_prompt() {
    let doc = common::json("templates/templates.json");
    let t = doc["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "qwen3")
        .unwrap();
    let tmpl = ChatTemplate::from_source(t["source"].as_str().unwrap(), "", "<|im_end|>").unwrap();
    let msgs = [Message {
        role: "user".into(),
        content: "hi".into(),
    }];
    let off = tmpl
        .render_string_with(
            &msgs,
            true,
            &RenderOptions {
                enable_thinking: Some(false),
                now: None,
            },
        )
        .unwrap();
    let default = tmpl.render_string(&msgs, true).unwrap();
    assert!(
        off.ends_with("<|im_start|>assistant\n<think>\n\n</think>\n\n"),
        "{off:?}"
    );
    assert!(default.ends_with("<|im_start|>assistant\n"), "{default:?}");
}

#[test]
fn strftime_now_formats_as_python_does() {
    use hearth::chat::strftime;
    // 2026-03-14 09:26:53 UTC, a Saturday; and a leap day before 1970.
    let t = chrono_free_unix("2026-03-14T09:26:53");
    assert_eq!(strftime("%d %b %Y", t).unwrap(), "14 Mar 2026");
    assert_eq!(
        strftime("%A, %B %-d, %Y %H:%M:%S %p %j %y %e|%%", t).unwrap(),
        "Saturday, March 14, 2026 09:26:53 AM 073 26 14|%"
    );
    let leap = chrono_free_unix("1968-02-29T23:59:59");
    assert_eq!(
        strftime("%Y-%m-%d %a %I%p %j", leap).unwrap(),
        "1968-02-29 Thu 11PM 060"
    );
    assert!(strftime("%Q", t).is_err());
}

/// Seconds since the epoch of an ISO `YYYY-MM-DDTHH:MM:SS` (UTC), by counting days (no date library).
fn chrono_free_unix(iso: &str) -> i64 {
    let n = |a: usize, b: usize| iso[a..b].parse::<i64>().unwrap();
    let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mut days = 0i64;
    if y >= 1970 {
        days += (1970..y)
            .map(|y| if leap(y) { 366 } else { 365 })
            .sum::<i64>();
    } else {
        days -= (y..1970)
            .map(|y| if leap(y) { 366 } else { 365 })
            .sum::<i64>();
    }
    let month_days = [
        31,
        if leap(y) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    days += month_days[..(m - 1) as usize].iter().sum::<i64>() + d - 1;
    days * 86_400 + n(11, 13) * 3600 + n(14, 16) * 60 + n(17, 19)
}

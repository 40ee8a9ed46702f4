//! AdmissionReview bytes through the decoder, the rule engine (validate and mutate, every
//! mutation switched on) and the patch builder. A patch that is produced must parse as
//! RFC 6902, apply to the object it was computed for, and leave nothing for a second
//! mutate pass to do (rules promise idempotence). Validation runs twice: without live
//! state, and against a fixed compiled site, as the webhook does with the served snapshot.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use portcullis::admission::review::{self, Answer, Request};
use portcullis::admission::settings::RuleSettings;
use portcullis::admission::{AdmissionSettings, Context, Engine, patch};
use portcullis::ingress::model::live::LiveState;
use portcullis::ingress::model::snapshot::Snapshot;
use serde_json::Value;

#[path = "common.rs"]
mod common;

static SITE: LazyLock<Snapshot> = LazyLock::new(common::site);

static ENGINE: LazyLock<Option<Engine>> = LazyLock::new(|| {
    let catalogue = Engine::new(AdmissionSettings::default()).ok()?;
    let mut settings = AdmissionSettings::default();
    for id in catalogue.rule_ids() {
        let on = RuleSettings {
            mutate: Some(true),
            ..RuleSettings::default()
        };
        settings.rules.insert(id.to_string(), on);
    }
    Engine::new(settings).ok()
});

fn context<'a>(engine: &'a Engine, req: &'a Request, object: &'a Value) -> Context<'a> {
    let mut ctx = Context::new(
        &req.kind.group,
        &req.kind.kind,
        req.operation,
        req.namespace.as_deref().unwrap_or(""),
        req.name.as_deref().unwrap_or(""),
        object,
        engine.settings(),
    );
    ctx.old_object = req.old_object.as_ref();
    ctx.dry_run = req.dry_run.unwrap_or(false);
    ctx
}

fuzz_target!(|data: &[u8]| {
    let Some(engine) = ENGINE.as_ref() else {
        panic!("the rule catalogue does not build");
    };
    let Ok(review) = review::decode(data) else {
        return;
    };
    let req = &review.request;
    let mut answer = Answer {
        allowed: true,
        ..Answer::default()
    };
    if let Some(object) = req.object.as_ref() {
        let ctx = context(engine, req, object);
        let decision = engine.validate(&ctx);
        answer.warnings = review::warnings(&decision.findings);
        // The API server's limits (review.rs): no control characters, 256 characters
        // each, 4096 in total.
        let mut total = 0;
        for w in &answer.warnings {
            assert!(!w.chars().any(char::is_control), "warning {w:?}");
            let len = w.chars().count();
            assert!(len <= 256, "warning of {len} characters");
            total += len;
        }
        assert!(total <= 4096, "warnings of {total} characters");
        if decision.denied() {
            answer.allowed = false;
            answer.message = Some(review::denial_message(&ctx.describe(), &decision.findings));
        }

        let mut live = context(engine, req, object);
        live.live = Some(&*SITE);
        let against_site = engine.validate(&live);
        // Live state only adds what collides with the site; it never hides a finding,
        // except all of them for an Ingress of a class the site does not serve.
        let foreign = live.ingress().is_some_and(|v| !SITE.serves(&v.ingress));
        for f in decision.findings.iter().filter(|_| !foreign) {
            assert!(
                against_site.findings.contains(f),
                "{f:?} lost against the site"
            );
        }

        let ops = engine.mutate(&ctx);
        if !ops.is_empty() {
            let rendered = patch::render(&ops);
            let parsed: json_patch::Patch = match serde_json::from_slice(&rendered) {
                Ok(p) => p,
                Err(e) => panic!("rendered patch does not parse: {e}"),
            };
            let mut patched = object.clone();
            if let Err(e) = json_patch::patch(&mut patched, &parsed) {
                panic!("patch does not apply: {e}");
            }
            let again = engine.mutate(&context(engine, req, &patched));
            assert!(again.is_empty(), "second mutate pass: {again:?}");
            answer.patch = Some(rendered);
        }
    }
    let out = review::encode(review.api_version, &req.uid, &answer);
    let Ok(encoded) = serde_json::from_slice::<Value>(&out) else {
        panic!("encoded review is not JSON");
    };
    assert_eq!(encoded["response"]["uid"].as_str(), Some(req.uid.as_str()));
    assert_eq!(
        encoded["response"]["allowed"].as_bool(),
        Some(answer.allowed)
    );
});

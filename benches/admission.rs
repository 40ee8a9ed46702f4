//! Decode + rules + encode for a typical Deployment review, for both endpoints.
//! Run: `cargo bench --bench admission`.
use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::admission::engine::Mode;
use portcullis::admission::http::answer_review;
use portcullis::admission::{AdmissionSettings, Engine};

const REVIEW: &[u8] = include_bytes!("data/deployment-review.json");

fn bench(c: &mut Criterion) {
    let engine = Engine::new(AdmissionSettings::default()).expect("default settings are valid");
    c.bench_function("validate_deployment_review", |b| {
        b.iter(|| {
            answer_review(&engine, Mode::Validate, std::hint::black_box(REVIEW))
                .expect("valid review")
        })
    });
    c.bench_function("mutate_deployment_review", |b| {
        b.iter(|| {
            answer_review(&engine, Mode::Mutate, std::hint::black_box(REVIEW))
                .expect("valid review")
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

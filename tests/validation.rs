//! Every hyperparameter check, one test per entry: an invalid value is refused when the
//! optimizer is built, with an error naming the config, the field and the accepted range.
//! The README's "Guarantees" section lists the same table.

mod common;

use burn::grad_clipping::GradientClippingConfig::{Norm, Value};
use burn::optim::AdamConfig;
use scaleinv::models::DigitsCnnConfig;
use scaleinv::{
    AdamCConfig, AdamPConfig, ConfigError, GradientStabilizerConfig, NapConfig, NormAffine,
    RadialProjectionConfig, SgdpConfig, StableSpamConfig, WidthScaledAdamWConfig,
};

/// Checks that `result` is an out-of-range error for `field` with the range text `range`.
fn expect_out_of_range<T>(result: Result<T, ConfigError>, field: &str, range: &str) {
    match result.err() {
        Some(ConfigError::OutOfRange {
            field: f, expected, ..
        }) => {
            assert_eq!((f, expected), (field, range));
        }
        other => panic!("expected {field} out of range {range}, got {other:?}"),
    }
}

const UNIT_HALF_OPEN: &str = "[0, 1)";
const UNIT_CLOSED: &str = "[0, 1]";
const UNIT_OPEN: &str = "(0, 1)";
const POSITIVE: &str = "(0, inf), finite";
const NON_NEGATIVE: &str = "[0, inf), finite";
const FINITE: &str = "(-inf, inf), finite";
const AT_LEAST_ONE: &str = "[1, inf), an integer";
const EPSILON: &str = "[1e-18, 1e18] (ε and ε² normal in f32)";

/// One `#[test]` per entry: `name: expression => field, range;`.
macro_rules! rejects {
    ($($name:ident: $result:expr => $field:literal, $range:expr;)*) => {
        $(
            #[test]
            fn $name() {
                expect_out_of_range($result, $field, $range);
            }
        )*
    };
}

fn adam() -> burn::optim::Adam {
    AdamConfig::new().build()
}

rejects! {
    adamp_beta_1_one: AdamPConfig::new().with_beta_1(1.0).try_build() => "beta_1", UNIT_HALF_OPEN;
    adamp_beta_1_negative: AdamPConfig::new().with_beta_1(-0.1).try_init() => "beta_1", UNIT_HALF_OPEN;
    adamp_beta_2_one: AdamPConfig::new().with_beta_2(1.0).try_build() => "beta_2", UNIT_HALF_OPEN;
    adamp_beta_2_nan: AdamPConfig::new().with_beta_2(f64::NAN).try_build() => "beta_2", UNIT_HALF_OPEN;
    adamp_epsilon_zero: AdamPConfig::new().with_epsilon(0.0).try_build() => "epsilon", EPSILON;
    adamp_epsilon_infinite: AdamPConfig::new().with_epsilon(f64::INFINITY).try_build() => "epsilon", EPSILON;
    adamp_weight_decay_negative: AdamPConfig::new().with_weight_decay(-1e-4).try_build() => "weight_decay", NON_NEGATIVE;
    adamp_delta_negative: AdamPConfig::new().with_delta(-0.1).try_build() => "delta", NON_NEGATIVE;
    adamp_delta_nan: AdamPConfig::new().with_delta(f64::NAN).try_build() => "delta", NON_NEGATIVE;
    adamp_wd_ratio_above_one: AdamPConfig::new().with_wd_ratio(1.5).try_build() => "wd_ratio", UNIT_CLOSED;
    adamp_wd_ratio_negative: AdamPConfig::new().with_wd_ratio(-0.1).try_build() => "wd_ratio", UNIT_CLOSED;

    sgdp_momentum_one: SgdpConfig::new().with_momentum(1.0).try_build() => "momentum", UNIT_HALF_OPEN;
    sgdp_momentum_negative: SgdpConfig::new().with_momentum(-0.5).try_init() => "momentum", UNIT_HALF_OPEN;
    sgdp_dampening_above_one: SgdpConfig::new().with_dampening(1.5).try_build() => "dampening", UNIT_CLOSED;
    sgdp_weight_decay_negative: SgdpConfig::new().with_weight_decay(-1.0).try_build() => "weight_decay", NON_NEGATIVE;
    sgdp_epsilon_zero: SgdpConfig::new().with_epsilon(0.0).try_build() => "epsilon", EPSILON;
    sgdp_delta_negative: SgdpConfig::new().with_delta(-1.0).try_build() => "delta", NON_NEGATIVE;
    sgdp_wd_ratio_above_one: SgdpConfig::new().with_wd_ratio(2.0).try_build() => "wd_ratio", UNIT_CLOSED;

    stable_spam_beta_1_one: StableSpamConfig::new().with_beta_1(1.0).try_build() => "beta_1", UNIT_HALF_OPEN;
    stable_spam_beta_2_negative: StableSpamConfig::new().with_beta_2(-0.5).try_init() => "beta_2", UNIT_HALF_OPEN;
    stable_spam_epsilon_zero: StableSpamConfig::new().with_epsilon(0.0).try_build() => "epsilon", EPSILON;
    stable_spam_weight_decay_negative: StableSpamConfig::new().with_weight_decay(-1.0).try_build() => "weight_decay", NON_NEGATIVE;
    stable_spam_gamma_1_zero: StableSpamConfig::new().with_gamma_1(0.0).try_build() => "gamma_1", UNIT_OPEN;
    stable_spam_gamma_2_one: StableSpamConfig::new().with_gamma_2(1.0).try_build() => "gamma_2", UNIT_OPEN;
    stable_spam_theta_one: StableSpamConfig::new().with_theta(1.0).try_build() => "theta", UNIT_OPEN;
    stable_spam_theta_nan: StableSpamConfig::new().with_theta(f64::NAN).try_build() => "theta", UNIT_OPEN;
    stable_spam_eta_min_above_one: StableSpamConfig::new().with_eta_min(1.5).try_build() => "eta_min", UNIT_CLOSED;
    stable_spam_total_steps_zero: StableSpamConfig::new().with_total_steps(Some(0)).try_build() => "total_steps", AT_LEAST_ONE;

    width_scaled_width_zero: WidthScaledAdamWConfig::new(64, 0).validate() => "width", AT_LEAST_ONE;
    width_scaled_base_width_zero: WidthScaledAdamWConfig::new(0, 64).validate() => "base_width", AT_LEAST_ONE;
    width_scaled_beta_1_one: WidthScaledAdamWConfig::new(64, 128).with_beta_1(1.0).validate() => "beta_1", UNIT_HALF_OPEN;
    width_scaled_beta_2_one: WidthScaledAdamWConfig::new(64, 128).with_beta_2(1.0).validate() => "beta_2", UNIT_HALF_OPEN;
    width_scaled_epsilon_negative: WidthScaledAdamWConfig::new(64, 128).with_epsilon(-1e-8).validate() => "epsilon", EPSILON;
    width_scaled_weight_decay_negative: WidthScaledAdamWConfig::new(64, 128).with_weight_decay(-0.1).validate() => "weight_decay", NON_NEGATIVE;
    width_scaled_lr_exponent_nan: WidthScaledAdamWConfig::new(64, 128).with_lr_exponent(f64::NAN).validate() => "lr_exponent", FINITE;
    width_scaled_wd_exponent_infinite: WidthScaledAdamWConfig::new(64, 128).with_wd_exponent(f64::INFINITY).try_build(scaleinv::WidthRole::Matrix) => "wd_exponent", FINITE;

    nap_project_every_zero: NapConfig::new().with_project_every(0).try_wrap(adam()) => "project_every", AT_LEAST_ONE;
    nap_epsilon_zero: NapConfig::new().with_epsilon(0.0).try_wrap(adam()) => "epsilon", EPSILON;
    nap_scale_decay_negative: NapConfig::new().with_norm_affine(NormAffine::DecayScale { rate: -1.0 }).try_wrap(adam()) => "norm_affine.rate", NON_NEGATIVE;

    projection_delta_negative: RadialProjectionConfig::new().with_delta(-0.1).try_wrap(adam()) => "delta", NON_NEGATIVE;
    projection_wd_ratio_above_one: RadialProjectionConfig::new().with_wd_ratio(1.1).try_wrap(adam()) => "wd_ratio", UNIT_CLOSED;
    projection_epsilon_zero: RadialProjectionConfig::new().with_epsilon(0.0).try_wrap(adam()) => "epsilon", EPSILON;
    projection_weight_decay_nan: RadialProjectionConfig::new().with_weight_decay(f64::NAN).try_wrap(adam()) => "weight_decay", NON_NEGATIVE;

    adamp_epsilon_below_f32: AdamPConfig::new().with_epsilon(1e-50).try_build() => "epsilon", EPSILON;
    stable_spam_epsilon_below_f32: StableSpamConfig::new().with_epsilon(1e-30).try_build() => "epsilon", EPSILON;
    nap_epsilon_below_f32: NapConfig::new().with_epsilon(1e-50).try_wrap(adam()) => "epsilon", EPSILON;
    adamp_weight_decay_beyond_f32: AdamPConfig::new().with_weight_decay(1e39).try_build() => "weight_decay", NON_NEGATIVE;
    adamp_grad_clipping_norm_nan: AdamPConfig::new().with_grad_clipping(Some(Norm(f32::NAN))).try_init() => "grad_clipping.norm", POSITIVE;
    sgdp_grad_clipping_norm_negative: SgdpConfig::new().with_grad_clipping(Some(Norm(-1.0))).try_build() => "grad_clipping.norm", POSITIVE;
    stable_spam_grad_clipping_value_nan: StableSpamConfig::new().with_grad_clipping(Some(Value(f32::NAN))).try_build() => "grad_clipping.value", POSITIVE;
    width_scaled_grad_clipping_value_negative: WidthScaledAdamWConfig::new(64, 128).with_grad_clipping(Some(Value(-0.5))).validate() => "grad_clipping.value", POSITIVE;

    adamc_beta_1_one: AdamCConfig::new().with_beta_1(1.0).try_build(true) => "beta_1", UNIT_HALF_OPEN;
    adamc_beta_2_nan: AdamCConfig::new().with_beta_2(f64::NAN).try_build(false) => "beta_2", UNIT_HALF_OPEN;
    adamc_epsilon_zero: AdamCConfig::new().with_epsilon(0.0).try_build(true) => "epsilon", EPSILON;
    adamc_weight_decay_negative: AdamCConfig::new().with_weight_decay(-0.1).try_build(true) => "weight_decay", NON_NEGATIVE;
    adamc_peak_lr_zero: AdamCConfig::new().with_peak_lr(Some(0.0)).try_build(true) => "peak_lr", POSITIVE;

    stabilizer_gamma_1_one: GradientStabilizerConfig::new().with_gamma_1(1.0).try_wrap(adam()) => "gamma_1", UNIT_HALF_OPEN;
    stabilizer_gamma_2_negative: GradientStabilizerConfig::new().with_gamma_2(-0.1).try_init(adam()) => "gamma_2", UNIT_HALF_OPEN;
    stabilizer_epsilon_zero: GradientStabilizerConfig::new().with_epsilon(0.0).try_wrap(adam()) => "epsilon", EPSILON;

    adamp_corrected_decay_zero: AdamPConfig::new().with_corrected_decay(Some(0.0)).try_build() => "corrected_decay", POSITIVE;
    sgdp_corrected_decay_nan: SgdpConfig::new().with_corrected_decay(Some(f64::NAN)).try_build() => "corrected_decay", POSITIVE;
    width_scaled_corrected_decay_negative: WidthScaledAdamWConfig::new(64, 128).with_corrected_decay(Some(-1.0)).validate() => "corrected_decay", POSITIVE;
}

#[test]
fn the_message_names_config_field_value_and_range() {
    let err = AdamPConfig::new().with_beta_1(1.0).try_build().unwrap_err();
    assert_eq!(
        err.to_string(),
        "AdamPConfig.beta_1 = 1 is invalid: expected a value in [0, 1)"
    );
    let err = NapConfig::new()
        .with_project_every(0)
        .try_wrap(adam())
        .err()
        .expect("refused");
    assert_eq!(
        err.to_string(),
        "NapConfig.project_every = 0 is invalid: expected a value in [1, inf), an integer"
    );
}

#[test]
fn nesterov_needs_momentum_and_no_dampening() {
    let nesterov = SgdpConfig::new().with_momentum(0.9).with_nesterov(true);
    assert!(nesterov.validate().is_ok());
    let err = nesterov
        .clone()
        .with_dampening(0.1)
        .try_build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "SgdpConfig: nesterov needs momentum > 0 and dampening = 0"
    );
    let err = nesterov
        .with_momentum(0.0)
        .try_init()
        .err()
        .expect("refused");
    assert!(matches!(err, ConfigError::Conflict { .. }), "{err:?}");
}

#[test]
fn nap_policies_that_name_parameters_need_the_model() {
    let err = NapConfig::new()
        .with_norm_affine(NormAffine::ProjectJointly)
        .try_init(adam())
        .err()
        .expect("refused");
    assert!(err.to_string().contains("init_for"), "{err}");
}

/// The model-aware constructors validate too, before looking at the model.
#[test]
fn constructors_for_a_model_validate_first() {
    let model = DigitsCnnConfig::default().init(&common::cpu_device());
    let bad_adamp = AdamPConfig::new().with_beta_2(-0.1);
    assert!(bad_adamp.try_init_for(&model).is_err());
    let bad_sgdp = SgdpConfig::new().with_momentum(2.0);
    assert!(bad_sgdp.try_init_for(&model).is_err());
    let bad_projection = RadialProjectionConfig::new().with_delta(-1.0);
    assert!(bad_projection.try_init_for(adam(), &model).is_err());
    let bad_nap = NapConfig::new().with_epsilon(-1.0);
    assert!(bad_nap.try_init_for(adam(), &model).is_err());
    let bad_width = WidthScaledAdamWConfig::new(0, 64);
    assert!(bad_width.try_init_for(&model).is_err());
}

/// Every valid edge of each range is accepted.
#[test]
fn range_edges_that_are_valid_are_accepted() {
    let adamp = AdamPConfig::new()
        .with_beta_1(0.0)
        .with_beta_2(0.0)
        .with_weight_decay(0.0)
        .with_delta(0.0)
        .with_wd_ratio(1.0);
    assert!(adamp.try_build().is_ok());
    assert!(AdamPConfig::new().with_wd_ratio(0.0).try_build().is_ok());
    let sgdp = SgdpConfig::new().with_momentum(0.0).with_dampening(1.0);
    assert!(sgdp.try_build().is_ok());
    let spam = StableSpamConfig::new()
        .with_eta_min(0.0)
        .with_total_steps(Some(1));
    assert!(spam.try_build().is_ok());
    assert!(WidthScaledAdamWConfig::new(1, 1).validate().is_ok());
    assert!(
        NapConfig::new()
            .with_project_every(1)
            .try_wrap(adam())
            .is_ok()
    );
}

#[test]
#[should_panic(expected = "AdamPConfig.epsilon = 0 is invalid")]
fn the_convenience_constructors_panic_with_the_same_message() {
    let _ = AdamPConfig::new().with_epsilon(0.0).init();
}

/// A learning rate is passed per step, so it is checked there: `step` panics with a
/// message naming it, `try_step` returns it as an error (tests/non_finite.rs).
#[test]
#[should_panic(expected = "learning rate -0.001 is invalid")]
fn a_negative_learning_rate_is_refused_at_the_step() {
    use burn::optim::Optimizer;
    let device = common::cpu_device();
    let p = burn::tensor::Tensor::<1>::ones([3], &device);
    let _ = AdamPConfig::new().build().step(-1e-3, p.clone(), p, None);
}

/// Every optimizer of the catalog refuses a negative learning rate at the step with a message
/// that names it (`try_step`'s error: tests/non_finite.rs).
#[test]
fn every_optimizer_names_a_negative_learning_rate() {
    use burn::optim::Optimizer;
    use common::catalog::{Entry, OptimizerVisitor, Settings, for_each_optimizer};
    struct Refused(usize);
    impl OptimizerVisitor for Refused {
        fn visit<O: Optimizer>(&mut self, entry: &Entry, build: &dyn Fn(Settings) -> O) {
            let optim = build(Settings::default());
            let p = burn::tensor::Tensor::<2>::ones([3, 2], &common::cpu_device());
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                optim.step(-1e-3, p.clone(), p.clone(), None)
            }));
            let message = match result {
                Ok(_) => panic!("{}: a negative learning rate was accepted", entry.name),
                Err(e) => e.downcast_ref::<String>().cloned().unwrap_or_default(),
            };
            // The message names the rate passed to the step (width-scaled AdamW too, not
            // its rate after the width scaling).
            assert!(
                message.contains("learning rate -0.001 is invalid: expected a finite value ≥ 0"),
                "{}: {message}",
                entry.name
            );
            self.0 += 1;
        }
    }
    let mut refused = Refused(0);
    for_each_optimizer(&mut refused);
    assert_eq!(refused.0, common::catalog::names().len());
}

//! Lifecycle rules: a shell as PID 1 that swallows SIGTERM, and a preStop sleep that uses up
//! the whole termination grace period. Commands are read as argv lists; anything that is
//! not a list of strings, or a script too dynamic to read (`sleep $DELAY`), is skipped
//! rather than guessed at.
use crate::admission::lookup::At;
use serde_json::Value;

use super::{Rule, Violation};
use crate::admission::context::Context;
use crate::admission::settings::Action;
use crate::admission::template::{ContainerKind, containers};

/// The lifecycle rules.
pub fn rules() -> Vec<Box<dyn Rule>> {
    vec![
        Box::new(ShellEntrypoint),
        Box::new(TerminationGracePeriodTooShort),
    ]
}

/// Shells that, as PID 1, neither forward signals to their children nor die on SIGTERM.
const SHELLS: [&str; 5] = ["sh", "bash", "ash", "dash", "zsh"];

/// Kubernetes' default `terminationGracePeriodSeconds`.
const DEFAULT_GRACE_SECONDS: f64 = 30.0;

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A list of strings, or None when it is absent or holds anything else.
fn strings(v: Option<&Value>) -> Option<Vec<&str>> {
    v?.as_array()?.iter().map(Value::as_str).collect()
}

/// The script of `sh -c SCRIPT` (also `/bin/bash -ec`, `/usr/bin/env sh -c`, `bash -o
/// pipefail -c`), or None when argv does not run a shell with `-c`.
pub fn shell_script<'a>(argv: &[&'a str]) -> Option<&'a str> {
    let mut i = 0;
    if basename(argv.first()?) == "env" {
        i = 1;
        // Skip env's own options and VAR=value assignments.
        while let Some(a) = argv.get(i) {
            if matches!(*a, "-u" | "--unset" | "-C" | "--chdir") {
                i += 2;
            } else if a.starts_with('-') || a.contains('=') {
                i += 1;
            } else {
                break;
            }
        }
    }
    if !SHELLS.contains(&basename(argv.get(i)?)) {
        return None;
    }
    i += 1;
    let mut dash_c = false;
    while let Some(a) = argv.get(i) {
        if *a == "--" {
            i += 1;
            break;
        }
        let is_option = a.len() > 1 && (a.starts_with('-') || a.starts_with('+'));
        if !is_option {
            break;
        }
        if !a.starts_with("--") {
            let flags = &a[1..];
            dash_c |= a.starts_with('-') && flags.contains('c');
            // `-o pipefail`, `-O extglob`: the option name is the next argument.
            if flags.ends_with('o') || flags.ends_with('O') {
                i += 1;
            }
        }
        i += 1;
    }
    if dash_c { argv.get(i).copied() } else { None }
}

/// The simple commands of a script, split at newlines, `;`, `&&` and `||`. Quoting is not
/// understood: this is a reading aid for common one-liners, not a shell parser.
fn statements(script: &str) -> impl Iterator<Item = &str> {
    script
        .split(['\n', ';'])
        .flat_map(|s| s.split("&&"))
        .flat_map(|s| s.split("||"))
        .map(str::trim)
        .filter(|s| !s.is_empty() && !s.starts_with('#'))
}

/// True for `exec PROGRAM …`; not for a bare `exec` or `exec 2>&1`, which only set up
/// redirections and leave the shell in place.
fn execs_program(statement: &str) -> bool {
    let mut words = statement.split_whitespace();
    if words.next() != Some("exec") {
        return false;
    }
    words.next().is_some_and(|w| {
        let redirect = w.trim_start_matches(|c: char| c.is_ascii_digit());
        !(redirect.starts_with('>') || redirect.starts_with('<'))
    })
}

/// True when the script hands PID 1 to the real program (`exec app`, also as its last
/// command after some setup) or traps SIGTERM itself.
fn shell_steps_aside(script: &str) -> bool {
    if statements(script).next().is_some_and(execs_program)
        || statements(script).last().is_some_and(execs_program)
    {
        return true;
    }
    statements(script).any(|s| s.starts_with("trap ") && s.contains("TERM"))
}

/// `shellEntrypoint`: a container whose command runs `sh -c SCRIPT` as PID 1. The shell
/// does not forward SIGTERM to the program it started, and as PID 1 it ignores it itself,
/// so every shutdown waits out the grace period and ends in SIGKILL. Some shells exec a
/// lone simple command on their own, but not all (busybox), so only an explicit `exec` or a
/// TERM trap counts. Judged on long-running workloads' containers and sidecars; a command
/// left to the image (no `command`) is not known here.
pub struct ShellEntrypoint;

impl Rule for ShellEntrypoint {
    fn id(&self) -> &'static str {
        "shellEntrypoint"
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        let Some(t) = ctx.template.as_ref().filter(|t| t.long_running) else {
            return Vec::new();
        };
        containers(ctx.object, &t.spec)
            .into_iter()
            .filter(|c| c.kind == ContainerKind::Container || c.is_sidecar())
            .filter_map(|c| {
                let mut argv = strings(c.value.get("command"))?;
                argv.extend(strings(c.value.get("args")).unwrap_or_default());
                let script = shell_script(&argv)?;
                if shell_steps_aside(script) {
                    return None;
                }
                let shell = argv
                    .iter()
                    .map(|a| basename(a))
                    .find(|a| SHELLS.contains(a))
                    .unwrap_or("sh");
                Some(Violation::new(
                    format!(
                        "{} runs {shell} -c as PID 1, which does not pass SIGTERM on, so shutdown ends in SIGKILL: start the script with exec, run the binary directly, or use tini",
                        c.label()
                    ),
                    c.ptr.child("command"),
                ))
            })
            .collect()
    }
}

/// Seconds in a `sleep` argument: `15`, `15s`, `0.5`, `2m`, `1h`, `1d`, `infinity`.
fn sleep_seconds(arg: &str) -> Option<f64> {
    if arg == "infinity" || arg == "inf" {
        return Some(f64::INFINITY);
    }
    let (num, mult) = match arg.char_indices().last()? {
        (i, 's') => (&arg[..i], 1.0),
        (i, 'm') => (&arg[..i], 60.0),
        (i, 'h') => (&arg[..i], 3600.0),
        (i, 'd') => (&arg[..i], 86400.0),
        _ => (arg, 1.0),
    };
    let v: f64 = num.parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v * mult)
}

/// The time a `sleep A B …` command sleeps (GNU sleep adds its arguments), when its
/// arguments can be read; None when it is not a sleep or an argument is dynamic.
fn sleep_argv(words: &[&str]) -> Option<f64> {
    let (cmd, args) = words.split_first()?;
    if basename(cmd) != "sleep" || args.is_empty() {
        return None;
    }
    args.iter().map(|a| sleep_seconds(a)).sum()
}

/// How long a container's preStop hook at least sleeps: `preStop.sleep.seconds`, an exec
/// `sleep N`, or the sleeps in an exec `sh -c "sleep N; …"` (backgrounded ones excluded).
pub fn prestop_sleep(container: &Value) -> Option<f64> {
    let pre = container.get("lifecycle")?.get("preStop")?;
    if let Some(s) = pre.at("/sleep/seconds").and_then(Value::as_f64) {
        return Some(s);
    }
    let argv = strings(pre.at("/exec/command"))?;
    if let Some(s) = sleep_argv(&argv) {
        return Some(s);
    }
    let script = shell_script(&argv)?;
    let total: f64 = statements(script)
        .filter(|s| !s.ends_with('&'))
        .filter_map(|s| sleep_argv(&s.split_whitespace().collect::<Vec<_>>()))
        .sum();
    (total > 0.0).then_some(total)
}

fn show_seconds(s: f64) -> String {
    if s.is_infinite() {
        "forever".to_string()
    } else {
        format!("{s}s")
    }
}

/// `terminationGracePeriodTooShort`: the preStop hook runs inside the grace period, so a
/// sleep as long as the period leaves the app no time to shut down before SIGKILL.
pub struct TerminationGracePeriodTooShort;

impl Rule for TerminationGracePeriodTooShort {
    fn id(&self) -> &'static str {
        "terminationGracePeriodTooShort"
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        let Some(t) = &ctx.template else {
            return Vec::new();
        };
        let grace = t
            .spec
            .get(ctx.object)
            .and_then(|s| s.get("terminationGracePeriodSeconds"))
            .and_then(Value::as_f64)
            .filter(|g| *g >= 0.0)
            .unwrap_or(DEFAULT_GRACE_SECONDS);
        containers(ctx.object, &t.spec)
            .into_iter()
            .filter_map(|c| {
                let sleep = prestop_sleep(c.value)?;
                (sleep >= grace).then(|| {
                    Violation::new(
                        format!(
                            "{} preStop sleeps {} but terminationGracePeriodSeconds is {grace}: it is killed before the hook ends; raise the period above the sleep plus shutdown time",
                            c.label(),
                            show_seconds(sleep)
                        ),
                        t.spec.child("terminationGracePeriodSeconds"),
                    )
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_shell_scripts() {
        let cases: &[(&[&str], Option<&str>)] = &[
            (&["sh", "-c", "run"], Some("run")),
            (&["/bin/bash", "-ec", "run"], Some("run")),
            (&["/bin/bash", "-o", "pipefail", "-c", "run"], Some("run")),
            (&["bash", "-euo", "pipefail", "-c", "run"], Some("run")),
            (&["/usr/bin/env", "sh", "-c", "run"], Some("run")),
            (&["env", "-u", "X", "A=1", "zsh", "-c", "run"], Some("run")),
            (&["dash", "-c", "--", "run"], Some("run")),
            (&["sh", "script.sh"], None),
            (&["sh", "-c"], None),
            (&["tini", "--", "sh", "-c", "run"], None),
            (&["/app/server", "-c", "conf"], None),
            (&["fish", "-c", "run"], None),
            (&["sh", "-e", "-x"], None),
        ];
        for (argv, want) in cases {
            assert_eq!(shell_script(argv), *want, "{argv:?}");
        }
        assert_eq!(shell_script(&[]), None);
    }

    #[test]
    fn exec_or_a_trap_lets_the_shell_off() {
        assert!(shell_steps_aside("exec nginx -g 'daemon off;'"));
        assert!(shell_steps_aside("  exec app"));
        assert!(shell_steps_aside("set -e\nmigrate\nexec app --port 80\n"));
        assert!(shell_steps_aside("./setup && exec ./app"));
        assert!(shell_steps_aside(
            "trap 'kill $PID' TERM; ./app & PID=$!; wait $PID"
        ));
        assert!(!shell_steps_aside("./app"));
        assert!(!shell_steps_aside("executor --run"));
        assert!(!shell_steps_aside("exec 2>&1; ./app"));
        assert!(!shell_steps_aside("trap 'echo bye' EXIT; ./app"));
    }

    #[test]
    fn reads_sleep_durations() {
        assert_eq!(sleep_seconds("15"), Some(15.0));
        assert_eq!(sleep_seconds("2m"), Some(120.0));
        assert_eq!(sleep_seconds("0.5s"), Some(0.5));
        assert_eq!(sleep_seconds("infinity"), Some(f64::INFINITY));
        assert_eq!(sleep_seconds("$DELAY"), None);
        assert_eq!(sleep_seconds("-1"), None);
        assert_eq!(sleep_seconds("s"), None);
        assert_eq!(sleep_argv(&["sleep", "10", "5s"]), Some(15.0));
        assert_eq!(sleep_argv(&["sleep"]), None);
    }

    #[test]
    fn prestop_sleep_forms() {
        let c = |pre: Value| json!({"lifecycle": {"preStop": pre}});
        assert_eq!(
            prestop_sleep(&c(json!({"sleep": {"seconds": 20}}))),
            Some(20.0)
        );
        assert_eq!(
            prestop_sleep(&c(json!({"exec": {"command": ["/bin/sleep", "45"]}}))),
            Some(45.0)
        );
        assert_eq!(
            prestop_sleep(&c(
                json!({"exec": {"command": ["sh", "-c", "sleep 10; nginx -s quit; sleep 5"]}})
            )),
            Some(15.0)
        );
        assert_eq!(
            prestop_sleep(&c(
                json!({"exec": {"command": ["sh", "-c", "sleep 100 & kill 1"]}})
            )),
            None
        );
        assert_eq!(
            prestop_sleep(&c(json!({"httpGet": {"path": "/drain"}}))),
            None
        );
        assert_eq!(
            prestop_sleep(&c(json!({"exec": {"command": "sleep 5"}}))),
            None
        );
        assert_eq!(prestop_sleep(&json!({"lifecycle": null})), None);
    }
}

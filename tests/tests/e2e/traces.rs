//! Traces: one rollback is one trace from the breach the coordinator saw to
//! each agent's run of the action, received by a real OTLP receiver; and a
//! dead OTLP endpoint never holds up a rollback.

use std::collections::HashSet;
use std::time::Duration;

use rollguard_tests::otlp::{DeadEndpoint, DeadEvent, ReceivedSpan, TraceReceiver};
use rollguard_tests::{
    agent, ctl, test_dir, wait_until, Agent, AgentSpec, Coordinator, DemoApp, BETA_VERSION,
};

fn find<'a>(spans: &'a [ReceivedSpan], name: &str, service: &str) -> Vec<&'a ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.name == name && s.service == service)
        .collect()
}

fn parent_of<'a>(spans: &'a [ReceivedSpan], child: &ReceivedSpan) -> Option<&'a ReceivedSpan> {
    spans
        .iter()
        .find(|s| s.trace_id == child.trace_id && s.span_id == child.parent_span_id)
}

#[test]
fn a_rollback_is_one_trace_from_the_breach_to_each_agents_action() {
    let receiver = TraceReceiver::start().expect("receiver");
    let root = test_dir("traces");
    let telemetry = format!("[telemetry]\notlp_endpoint = \"{}\"\n", receiver.url);
    let coordinator = Coordinator::start(
        &root.join("data"),
        Some(&format!(
            "{telemetry}[deployments.traced]\ncheck_interval = \"1s\"\nconsecutive_failures = 2\n\
             min_requests = 50\n[[deployments.traced.rules]]\nmetric = \"error_rate\"\nmax = 0.05\n"
        )),
    )
    .expect("coordinator");
    let app = DemoApp::start(&root.join("app"), BETA_VERSION, "2s").expect("app");
    let beta = Agent::start(
        &root,
        &coordinator.url,
        &AgentSpec {
            host_id: "beta-traced".to_owned(),
            deployment: "traced".to_owned(),
            cohort: "beta".to_owned(),
            extra_toml: format!("{}{telemetry}", app.agent_toml()),
        },
    )
    .expect("agent");
    wait_until(
        "the automatic rollback to run",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || (beta.evidence_lines() > 0).then_some(()),
    )
    .expect("rolled back");

    // The automatic decision: policy.evaluate -> rollback.broadcast -> agent.action.
    let (evaluate, broadcast, action) = wait_until(
        "the decision's spans at the receiver",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let spans = receiver.spans();
            find(&spans, "agent.action", "rollguard-agent")
                .into_iter()
                .find_map(|action| {
                    let broadcast = parent_of(&spans, action)?;
                    let evaluate = parent_of(&spans, broadcast)?;
                    Some((evaluate.clone(), broadcast.clone(), action.clone()))
                })
        },
    )
    .expect("one trace");
    assert_eq!(broadcast.name, "rollback.broadcast");
    assert_eq!(broadcast.service, "rollguard-coordinator");
    assert_eq!(evaluate.name, "policy.evaluate");
    assert_eq!(evaluate.service, "rollguard-coordinator");
    assert!(
        evaluate.parent_span_id.is_empty(),
        "the evaluation is the trace's root"
    );
    assert_eq!(evaluate.trace_id, action.trace_id);
    assert_eq!(evaluate.attribute("deployment"), Some("traced"));
    assert_eq!(evaluate.attribute("verdict"), Some("fail"));
    assert_eq!(evaluate.attribute("decision"), Some("roll_back"));
    assert!(
        evaluate
            .attribute("rule.error_rate.value")
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|v| v > 0.05),
        "{evaluate:?}"
    );
    assert_eq!(evaluate.attribute("rule.error_rate.limit"), Some("0.05"));
    assert_eq!(action.attribute("host.id"), Some("beta-traced"));
    assert_eq!(action.attribute("action"), Some("rollback"));
    assert_eq!(action.attribute("exit_code"), Some("0"));
    assert!(action.attribute("duration_ms").is_some(), "{action:?}");

    // A manual rollback starts its trace in the CLI and carries it through gRPC metadata.
    coordinator
        .wait_for_agents("the agent still connected", |agents| {
            agent(agents, "beta-traced").is_some_and(|a| a["connected"] == true)
        })
        .expect("connected");
    let out = ctl(
        &coordinator.url,
        &[
            "--otlp-endpoint",
            &receiver.url,
            "rollback",
            "traced",
            "--reason",
            "by hand",
            "--wait",
            "-o",
            "json",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let chain = wait_until(
        "the manual rollback's spans",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let spans = receiver.spans();
            find(&spans, "agent.action", "rollguard-agent")
                .into_iter()
                .find_map(|action| {
                    let broadcast = parent_of(&spans, action)?;
                    let control = parent_of(&spans, broadcast)?;
                    let cli = parent_of(&spans, control)?;
                    Some(vec![
                        cli.clone(),
                        control.clone(),
                        broadcast.clone(),
                        action.clone(),
                    ])
                })
        },
    )
    .expect("one trace across three services");
    let names: Vec<(&str, &str)> = chain
        .iter()
        .map(|s| (s.service.as_str(), s.name.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("rollguardctl", "rollguardctl.rollback"),
            ("rollguard-coordinator", "control.rollback"),
            ("rollguard-coordinator", "rollback.broadcast"),
            ("rollguard-agent", "agent.action"),
        ]
    );
    let traces: HashSet<&Vec<u8>> = chain.iter().map(|s| &s.trace_id).collect();
    assert_eq!(traces.len(), 1, "one trace id");
}

#[test]
fn a_dead_otlp_endpoint_does_not_hold_up_a_rollback() {
    let dead = DeadEndpoint::start().expect("dead endpoint");
    let root = test_dir("deadotlp");
    let telemetry = format!("[telemetry]\notlp_endpoint = \"{}\"\n", dead.url);
    // Every round errs (no beta host scrapes an app), so every round is traced.
    let coordinator = Coordinator::start(
        &root.join("data"),
        Some(&format!(
            "{telemetry}[deployments.dead]\ncheck_interval = \"1s\"\n\
             [[deployments.dead.rules]]\nmetric = \"error_rate\"\nmax = 0.05\n"
        )),
    )
    .expect("coordinator");
    let mut spec = AgentSpec::with_evidence_action("beta-dead", "dead", "beta");
    spec.extra_toml.push_str(&telemetry);
    let beta = Agent::start(&root, &coordinator.url, &spec).expect("agent");
    coordinator
        .wait_for_agents("agent connected", |agents| {
            agent(agents, "beta-dead").is_some_and(|a| a["connected"] == true)
        })
        .expect("connected");
    // Wait until an export is stuck on the dead endpoint.
    wait_until(
        "an export to the dead endpoint",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || {
            dead.events()
                .contains(&DeadEvent::RequestStarted)
                .then_some(())
        },
    )
    .expect("export started");
    dead.mark("rollback requested");
    let out = coordinator.ctl(&[
        "rollback",
        "dead",
        "--reason",
        "dead collector",
        "--wait",
        "-o",
        "json",
    ]);
    dead.mark("rollback done");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(beta.evidence_lines(), 1);
    // The exporter's first timeout fires only after the rollback completed.
    wait_until(
        "the stuck export to time out",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            dead.events()
                .contains(&DeadEvent::RequestAbandoned)
                .then_some(())
        },
    )
    .expect("the exporter gives up eventually");
    let events = dead.events();
    let position = |e: &DeadEvent| events.iter().position(|x| x == e).expect("present");
    assert!(
        position(&DeadEvent::Marker("rollback done".to_owned()))
            < position(&DeadEvent::RequestAbandoned),
        "the rollback waited for the exporter: {events:?}"
    );
}

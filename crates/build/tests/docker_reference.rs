//! Image configs as docker's builder produced them for the same Dockerfiles
//! (observed on 2026-11-25 with Debian's docker.io 20.10, legacy builder,
//! `docker image inspect --format '{{json .Config}}'`). These pin the
//! front end to docker's behaviour for metadata, ARG/ENV scoping and
//! expansion.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use berth_build::config::ContainerConfig;
use berth_build::eval::BuildOptions;
use berth_build::plan::Plan;
use serde_json::json;

fn config(src: &str, build_args: &[(&str, &str)]) -> ContainerConfig {
    let build_args: BTreeMap<String, String> = build_args
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let plan = Plan::new(
        src,
        BuildOptions {
            build_args,
            ..Default::default()
        },
        None,
    )
    .unwrap();
    let mut stages = plan.eval_all(|_, _| Ok(Default::default())).unwrap();
    stages.remove(&plan.target).unwrap().config.config
}

const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[test]
fn metadata_scoping_and_expansion() {
    let src = r#"ARG G=global
FROM scratch
ARG G
ARG L=loc-$G
ENV A=1 B="two words" C=a\ b D='$A' E=${A}x F=${UNSET:-def} G2=$G L2=$L
ENV A=2 H=$A
ENV OLD hello   world $A
LABEL "x y"="1 2" z=$A
EXPOSE 80 53/udp 8000-8001/tcp
VOLUME /v1 ["/v2"]
VOLUME ["/v3", "/v4"]
WORKDIR rel
WORKDIR sub/../dir
WORKDIR /abs/$A
USER $A:grp
STOPSIGNAL SIGUSR1
HEALTHCHECK --interval=5s --retries=2 CMD curl -f x || exit 1
ONBUILD RUN echo $A
SHELL ["/bin/bash", "-c"]
CMD echo $A
ENTRYPOINT ["e"]
"#;
    let docker = json!({
        "User": "2:grp",
        "ExposedPorts": {"53/udp": {}, "80/tcp": {}, "8000/tcp": {}, "8001/tcp": {}},
        "Env": [PATH, "A=2", "B=two words", "C=a b", "D=$A", "E=x", "F=def", "G2=global",
                "L2=loc-global", "H=1", "OLD=hello   world 2"],
        "Cmd": ["/bin/bash", "-c", "echo $A"],
        "Healthcheck": {"Test": ["CMD-SHELL", "curl -f x || exit 1"], "Interval": 5_000_000_000u64, "Retries": 2},
        "Volumes": {"/v1": {}, "/v3": {}, "/v4": {}, "[/v2]": {}},
        "WorkingDir": "/abs/2",
        "Entrypoint": ["e"],
        "OnBuild": ["RUN echo $A"],
        "Labels": {"x y": "1 2", "z": "2"},
        "StopSignal": "SIGUSR1",
        "Shell": ["/bin/bash", "-c"],
    });
    assert_eq!(serde_json::to_value(config(src, &[])).unwrap(), docker);
}

#[test]
fn entrypoint_keeps_a_cmd_of_the_same_stage() {
    let c = config(
        "FROM scratch\nCMD [\"a\"]\nHEALTHCHECK NONE\nENTRYPOINT run me\n",
        &[],
    );
    assert_eq!(c.cmd, Some(vec!["a".to_string()]));
    assert_eq!(
        c.entrypoint,
        Some(vec!["/bin/sh".into(), "-c".into(), "run me".into()])
    );
    assert_eq!(c.healthcheck.unwrap().test, ["NONE"]);
}

#[test]
fn build_args_and_env_precedence() {
    let src = "ARG G=global\nFROM scratch\nARG G\nARG L=default\nARG V\nENV V=env-wins\nARG V\nENV G2=$G L2=$L V2=$V\n";
    let c = config(src, &[("L", "cli"), ("V", "cli-v")]);
    assert_eq!(
        c.env,
        [PATH, "V=env-wins", "G2=global", "L2=cli", "V2=env-wins"]
    );
}

#[test]
fn backtick_escape() {
    let c = config(
        "# escape=`\nFROM scratch\nENV P=C:\\dir\\$G Q=a`$b R=\"x`\"y\"\n",
        &[],
    );
    assert_eq!(c.env, [PATH, "P=C:\\dir\\", "Q=a$b", "R=x\"y"]);
}

#[test]
fn stage_names_ports_and_legacy_label() {
    let src = "FROM scratch AS First\nENV S=1\nFROM first\nENV T=$S\nEXPOSE 8080/UDP\nENTRYPOINT []\nLABEL a b c\n";
    let c = config(src, &[]);
    assert_eq!(c.env, [PATH, "S=1", "T=1"]);
    assert!(c.exposed_ports.contains_key("8080/udp"));
    assert_eq!(c.entrypoint, None);
    assert_eq!(c.labels["a"], "b c");
}

use super::*;

/// A certificate (self-signed: the handshake checks the chain, not this
/// layer) naming `identity` by its SPIFFE URI.
fn certificate(identity: &Identity) -> Vec<u8> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names.push(rcgen::SanType::URI(
        rcgen::string::Ia5String::try_from(identity.uri()).unwrap(),
    ));
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().der().to_vec()
}

fn policy() -> AuthPolicy {
    AuthPolicy {
        roles: [
            ("vera".to_owned(), Role::Viewer),
            ("otto".to_owned(), Role::Operator),
            ("ada".to_owned(), Role::Admin),
        ]
        .into_iter()
        .collect(),
        revoked: [Identity::Operator("mallory".to_owned())]
            .into_iter()
            .collect(),
    }
}

fn agent() -> Identity {
    Identity::Agent("web-1".to_owned())
}

fn operator(name: &str) -> Identity {
    Identity::Operator(name.to_owned())
}

/// The enforced table, written out by hand: which callers may call each RPC.
/// Columns: unbound operator, agent, viewer, operator, admin.
fn expected(rpc: Rpc) -> [bool; 5] {
    const READ: [bool; 5] = [false, false, true, true, true];
    match rpc {
        Rpc::Connect => [false, true, false, false, false],
        Rpc::GetFleetStatus => READ,
        Rpc::WatchFleetStatus => READ,
        Rpc::ListAgents => READ,
        Rpc::GetCommand => READ,
        Rpc::History => READ,
        Rpc::Why => READ,
        Rpc::Report => READ,
        Rpc::ListDeployments => READ,
        Rpc::Rollback => [false, false, false, true, true],
        Rpc::Rearm => [false, false, false, true, true],
        Rpc::RolloutPreflight => READ,
        Rpc::RolloutStatus => READ,
        Rpc::RolloutRetro => READ,
        Rpc::RolloutHistory => READ,
        Rpc::RolloutStart => [false, false, false, true, true],
        Rpc::RolloutChange => [false, false, false, true, true],
    }
}

#[test]
fn every_rpc_against_every_kind_of_caller() {
    let authority = Authority::new(true, policy());
    let callers = [
        operator("nobody"),
        agent(),
        operator("vera"),
        operator("otto"),
        operator("ada"),
    ];
    let certificates: Vec<Vec<u8>> = callers.iter().map(certificate).collect();
    for rpc in Rpc::ALL {
        let allowed = expected(*rpc);
        for (column, der) in certificates.iter().enumerate() {
            let result = authority.admit(rpc.path(), Some(der));
            assert_eq!(
                result.is_ok(),
                allowed[column],
                "{rpc:?} by {}: {result:?}",
                callers[column]
            );
            if let Err(status) = result {
                assert_eq!(status.code(), tonic::Code::PermissionDenied, "{rpc:?}");
            }
        }
    }
}

#[test]
fn health_is_for_any_authenticated_caller_and_reflection_for_viewers() {
    let authority = Authority::new(true, policy());
    let health = "/grpc.health.v1.Health/Check";
    let reflection = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
    assert!(authority
        .admit(health, Some(&certificate(&agent())))
        .is_ok());
    assert!(authority
        .admit(health, Some(&certificate(&operator("vera"))))
        .is_ok());
    assert!(authority
        .admit(health, Some(&certificate(&operator("nobody"))))
        .is_err());
    assert!(authority
        .admit(reflection, Some(&certificate(&operator("vera"))))
        .is_ok());
    assert!(authority
        .admit(reflection, Some(&certificate(&agent())))
        .is_err());
}

#[test]
fn refusals_say_who_and_what_is_missing() {
    let authority = Authority::new(true, policy());
    let status = authority
        .admit(Rpc::Rollback.path(), Some(&certificate(&operator("vera"))))
        .unwrap_err();
    assert_eq!(
        status.message(),
        "operator vera has role viewer; rollback needs operator"
    );
    let status = authority
        .admit(
            Rpc::Rollback.path(),
            Some(&certificate(&operator("mallory"))),
        )
        .unwrap_err();
    assert_eq!(status.message(), "operator/mallory is revoked");
    let status = authority
        .admit(
            "/rollguard.v1.ControlService/Unknown",
            Some(&certificate(&operator("ada"))),
        )
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    let status = authority.admit(Rpc::Why.path(), None).unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let nobody = rcgen::KeyPair::generate().unwrap();
    let anonymous = rcgen::CertificateParams::new(vec!["example.com".to_owned()])
        .unwrap()
        .self_signed(&nobody)
        .unwrap();
    let status = authority
        .admit(Rpc::Why.path(), Some(anonymous.der()))
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
}

#[test]
fn without_tls_every_caller_is_trusted() {
    let authority = Authority::new(false, AuthPolicy::default());
    for rpc in Rpc::ALL {
        assert!(matches!(
            authority.admit(rpc.path(), None),
            Ok(Caller::Trusted)
        ));
    }
    assert_eq!(Caller::Trusted.actor("alice@laptop"), "alice@laptop");
    assert_eq!(Caller::Trusted.actor(" "), "unknown");
    assert!(Caller::Trusted.check_host("any-host").is_ok());
}

#[test]
fn the_certificate_names_the_actor_and_the_host() {
    let authority = Authority::new(true, policy());
    let otto = authority
        .admit(Rpc::Rollback.path(), Some(&certificate(&operator("otto"))))
        .unwrap();
    assert_eq!(otto.actor(""), "operator/otto");
    assert_eq!(otto.actor("root@box"), "operator/otto (note: root@box)");
    let web = authority
        .admit(Rpc::Connect.path(), Some(&certificate(&agent())))
        .unwrap();
    assert!(web.check_host("web-1").is_ok());
    let status = web.check_host("web-2").unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
}

#[tokio::test]
async fn a_reload_ends_the_streams_of_revoked_and_changed_identities() {
    let authority = Authority::new(true, policy());
    let web = authority
        .admit(Rpc::Connect.path(), Some(&certificate(&agent())))
        .unwrap();
    let vera = authority
        .admit(
            Rpc::WatchFleetStatus.path(),
            Some(&certificate(&operator("vera"))),
        )
        .unwrap();
    let ada = authority
        .admit(
            Rpc::WatchFleetStatus.path(),
            Some(&certificate(&operator("ada"))),
        )
        .unwrap();
    let mut next = policy();
    next.revoked.insert(agent());
    next.roles.remove("vera");
    assert_eq!(authority.reload(next), 2);
    // Both complete at once; ada's stream is untouched.
    web.revoked().await;
    vera.revoked().await;
    assert!(!ada.is_revoked(), "ada kept her role: her stream stays");
    let status = authority
        .admit(Rpc::Connect.path(), Some(&certificate(&agent())))
        .unwrap_err();
    assert_eq!(status.message(), "agent/web-1 is revoked");
}

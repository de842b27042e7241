//! Who may call what: the caller's identity from its TLS certificate, its
//! role from `[auth.roles]`, and the least role of every RPC.
//!
//! [`AuthLayer`] sits in front of every gRPC service. With TLS it admits a
//! request only if its certificate names a caller (never the payload) that
//! is not revoked and whose role allows the method; anything else gets
//! `PERMISSION_DENIED` before a service sees it. The admitted [`Caller`] is
//! put in the request's extensions for the services to read. Without TLS
//! (loopback or `--insecure-listen`) every caller is trusted as admin.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use rollguard_proto::tls::Identity;
use rollguard_proto::Rpc;
use tokio_util::sync::CancellationToken;
use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::Status;

use crate::config::{AuthPolicy, Role};

/// What a request needs from its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// An agent's certificate (and nothing else).
    Agent,
    /// Any authenticated caller: an agent, or an operator with a binding.
    Anyone,
    /// An operator whose role is at least this.
    Role(Role),
}

/// Where a request goes: a rollguard RPC, or a standard service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Rpc(Rpc),
    /// `grpc.health.v1.Health`: any authenticated caller may probe it.
    Health,
    /// Server reflection: it reads the API's shape, a viewer's right.
    Reflection,
}

impl Endpoint {
    fn from_path(path: &str) -> Option<Endpoint> {
        if let Some(rpc) = Rpc::from_path(path) {
            return Some(Endpoint::Rpc(rpc));
        }
        let service = path.strip_prefix('/')?.split('/').next()?;
        match service {
            "grpc.health.v1.Health" => Some(Endpoint::Health),
            "grpc.reflection.v1.ServerReflection" | "grpc.reflection.v1alpha.ServerReflection" => {
                Some(Endpoint::Reflection)
            }
            _ => None,
        }
    }

    /// The method in snake case, as the refusals name it (`rollback`, `get_fleet_status`).
    fn name(self) -> String {
        let method = match self {
            Endpoint::Rpc(rpc) => format!("{rpc:?}"),
            Endpoint::Health => "Health".to_owned(),
            Endpoint::Reflection => "ServerReflection".to_owned(),
        };
        let mut name = String::new();
        for (i, c) in method.chars().enumerate() {
            if c.is_uppercase() && i > 0 {
                name.push('_');
            }
            name.push(c.to_ascii_lowercase());
        }
        name
    }
}

/// The least a caller needs for each endpoint. Exhaustive on purpose: a
/// new RPC in the protos does not compile until it is classified here.
pub(crate) fn need(endpoint: Endpoint) -> Need {
    match endpoint {
        Endpoint::Rpc(rpc) => match rpc {
            Rpc::Connect => Need::Agent,
            Rpc::GetFleetStatus
            | Rpc::WatchFleetStatus
            | Rpc::ListAgents
            | Rpc::GetCommand
            | Rpc::History
            | Rpc::Why
            | Rpc::Report
            | Rpc::ListDeployments
            | Rpc::RolloutPreflight
            | Rpc::RolloutStatus
            | Rpc::RolloutRetro
            | Rpc::RolloutHistory => Need::Role(Role::Viewer),
            Rpc::Rollback | Rpc::Rearm | Rpc::RolloutStart | Rpc::RolloutChange => {
                Need::Role(Role::Operator)
            }
        },
        Endpoint::Health => Need::Anyone,
        Endpoint::Reflection => Need::Role(Role::Viewer),
    }
}

/// The caller of an admitted request.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    /// No TLS: nobody is authenticated, every caller acts as admin and the
    /// payload names it (the request's `actor`, `Hello.host_id`).
    Trusted,
    /// An agent, named by its certificate.
    Agent {
        host_id: String,
        /// Cancelled when the identity is revoked: its streams end.
        revoked: CancellationToken,
    },
    /// An operator, named by its certificate, with its bound role.
    Operator {
        name: String,
        revoked: CancellationToken,
    },
}

impl Caller {
    /// The caller of `request`, as the layer admitted it. A request that
    /// did not pass through the layer (a unit test calling a service
    /// directly) is trusted, as it would be without TLS.
    pub(crate) fn of<T>(request: &tonic::Request<T>) -> Caller {
        request
            .extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller::Trusted)
    }

    /// Completes when the caller's identity is revoked; never without TLS.
    pub(crate) async fn revoked(&self) {
        match self {
            Caller::Trusted => std::future::pending().await,
            Caller::Agent { revoked, .. } | Caller::Operator { revoked, .. } => {
                revoked.cancelled().await
            }
        }
    }

    /// Whether the caller's identity has been revoked since it was admitted.
    #[cfg(test)]
    pub(crate) fn is_revoked(&self) -> bool {
        match self {
            Caller::Trusted => false,
            Caller::Agent { revoked, .. } | Caller::Operator { revoked, .. } => {
                revoked.is_cancelled()
            }
        }
    }

    /// The audit actor of a change: the operator's certificate name, or
    /// without TLS the request's own `actor` (or `unknown`). With TLS the
    /// request's free text is kept only as a note after the name.
    pub(crate) fn actor(&self, requested: &str) -> String {
        let requested = requested.trim();
        match self {
            Caller::Trusted if requested.is_empty() => "unknown".to_owned(),
            Caller::Trusted => requested.to_owned(),
            Caller::Operator { name, .. } | Caller::Agent { host_id: name, .. } => {
                let kind = if matches!(self, Caller::Operator { .. }) {
                    "operator"
                } else {
                    "agent"
                };
                if requested.is_empty() {
                    format!("{kind}/{name}")
                } else {
                    format!("{kind}/{name} (note: {requested})")
                }
            }
        }
    }

    /// Checks that an agent caller announces its own host; without TLS any
    /// host id is taken.
    pub(crate) fn check_host(&self, host_id: &str) -> Result<(), Status> {
        match self {
            Caller::Agent { host_id: own, .. } if own != host_id => Err(Status::permission_denied(
                format!("the certificate of agent {own} cannot connect as host {host_id}"),
            )),
            _ => Ok(()),
        }
    }
}

/// The roles and revocations in force, and a token per identity seen so
/// that a revocation can end its open streams.
#[derive(Debug)]
pub(crate) struct Authority {
    /// Whether callers are authenticated (TLS is on).
    enabled: bool,
    state: RwLock<State>,
}

#[derive(Debug)]
struct State {
    policy: AuthPolicy,
    tokens: HashMap<Identity, CancellationToken>,
}

impl Authority {
    pub(crate) fn new(enabled: bool, policy: AuthPolicy) -> Authority {
        Authority {
            enabled,
            state: RwLock::new(State {
                policy,
                tokens: HashMap::new(),
            }),
        }
    }

    /// Puts a newly read `[auth]` in force. The open streams of every
    /// identity now revoked, or whose role changed, end at once (their
    /// callers reconnect and are judged by the new policy).
    pub(crate) fn reload(&self, policy: AuthPolicy) -> usize {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let old = std::mem::replace(&mut state.policy, policy);
        let mut ended = 0;
        let State { policy, tokens } = &mut *state;
        tokens.retain(|identity, token| {
            let changed = policy.revoked.contains(identity)
                || match identity {
                    Identity::Operator(name) => old.roles.get(name) != policy.roles.get(name),
                    Identity::Agent(_) => false,
                };
            if changed {
                token.cancel();
                ended += 1;
            }
            !changed
        });
        ended
    }

    /// The role of operator `name`, or why it has none (no binding, or
    /// revoked). With authentication off, every operator reads.
    pub(crate) fn role_of(&self, name: &str) -> Result<Role, String> {
        if !self.enabled {
            return Ok(Role::Viewer);
        }
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        if state
            .policy
            .revoked
            .contains(&Identity::Operator(name.to_owned()))
        {
            return Err(format!("operator {name} is revoked"));
        }
        state
            .policy
            .roles
            .get(name)
            .copied()
            .ok_or_else(|| format!("operator {name} has no role binding in [auth.roles]"))
    }

    /// Admits a request to `path` from the peer with `certificates`, or
    /// says why not.
    pub(crate) fn admit(&self, path: &str, certificate: Option<&[u8]>) -> Result<Caller, Status> {
        if !self.enabled {
            return Ok(Caller::Trusted);
        }
        let endpoint = Endpoint::from_path(path)
            .ok_or_else(|| Status::permission_denied(format!("no role may call {path}")))?;
        let der = certificate
            .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
        let identity = Identity::of_certificate(der).map_err(|err| {
            Status::permission_denied(format!("the certificate names nobody: {err}"))
        })?;
        let need = need(endpoint);
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if state.policy.revoked.contains(&identity) {
            return Err(Status::permission_denied(format!("{identity} is revoked")));
        }
        let caller = match &identity {
            Identity::Agent(host_id) => {
                if !matches!(need, Need::Agent | Need::Anyone) {
                    return Err(Status::permission_denied(format!(
                        "agent {host_id} may call only connect, not {}",
                        endpoint.name()
                    )));
                }
                let revoked = state.token(&identity);
                Caller::Agent {
                    host_id: host_id.clone(),
                    revoked,
                }
            }
            Identity::Operator(name) => {
                let Some(role) = state.policy.roles.get(name).copied() else {
                    return Err(Status::permission_denied(format!(
                        "operator {name} has no role binding in [auth.roles]"
                    )));
                };
                match need {
                    Need::Agent => {
                        return Err(Status::permission_denied(format!(
                            "operator {name} may not call {}: it is for agents",
                            endpoint.name()
                        )))
                    }
                    Need::Role(least) if role < least => {
                        return Err(Status::permission_denied(format!(
                            "operator {name} has role {role}; {} needs {least}",
                            endpoint.name()
                        )))
                    }
                    Need::Role(_) | Need::Anyone => {}
                }
                let revoked = state.token(&identity);
                Caller::Operator {
                    name: name.clone(),
                    revoked,
                }
            }
        };
        Ok(caller)
    }
}

impl State {
    fn token(&mut self, identity: &Identity) -> CancellationToken {
        self.tokens.entry(identity.clone()).or_default().clone()
    }
}

/// Puts [`AuthService`] in front of the gRPC routes.
#[derive(Debug, Clone)]
pub(crate) struct AuthLayer {
    pub(crate) authority: Arc<Authority>,
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            authority: Arc::clone(&self.authority),
        }
    }
}

/// Admits or refuses each request before the routes see it.
#[derive(Debug, Clone)]
pub(crate) struct AuthService<S> {
    inner: S,
    authority: Arc<Authority>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let certificates = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs);
        let first = certificates.as_deref().and_then(|c| c.first());
        let admitted = self
            .authority
            .admit(request.uri().path(), first.map(|c| c.as_ref()));
        match admitted {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                // The service that was polled ready takes the call; its clone
                // waits for the next one.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(inner.call(request))
            }
            Err(status) => {
                tracing::warn!(
                    path = request.uri().path(),
                    reason = status.message(),
                    "request refused"
                );
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests;

//! The gRPC service `switchyard.v1.Gateway`, plus health and reflection, over [`Gateway`].
//!
//! Status codes come from the same error table as HTTP statuses; the serving provider and
//! the attempts travel as response metadata, like the REST headers.

mod convert;
mod embed;
mod signed;

use std::{pin::Pin, sync::Arc};

use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status, metadata::MetadataValue};

use crate::{
    api::{ATTEMPTS_HEADER, PROVIDER_HEADER, REQUEST_ID_HEADER},
    auth::CallerHeaders,
    cache::CACHE_HEADER,
    error::Error,
    gateway::Gateway,
    pipeline::{Answer, Delivered, Head, Refusal},
    telemetry::Surface,
};

/// Generated protobuf types and service stubs.
pub mod pb {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("switchyard.v1");
}

/// The encoded descriptor set served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/switchyard_descriptor.bin"));

/// The gRPC services as one axum router: Gateway, health and reflection. Health reports
/// the Gateway service SERVING before the router is returned.
pub async fn router(gateway: Arc<Gateway>) -> axum::Router {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::gateway_server::GatewayServer<GrpcGateway>>()
        .await;
    let mut routes =
        tonic::service::Routes::new(pb::gateway_server::GatewayServer::new(GrpcGateway {
            gateway,
        }))
        .add_service(health_service);
    // v1 for current clients, v1alpha for the many (grpcurl, grpcio's own) that still ask it.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    match (reflection().build_v1(), reflection().build_v1alpha()) {
        (Ok(v1), Ok(v1alpha)) => routes = routes.add_service(v1).add_service(v1alpha),
        (Err(e), _) | (_, Err(e)) => tracing::error!(error = %e, "gRPC reflection is unavailable"),
    }
    routes
        .prepare()
        .into_axum_router()
        .layer(signed::DigestLayer)
}

/// The `switchyard.v1.Gateway` implementation.
pub struct GrpcGateway {
    gateway: Arc<Gateway>,
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::ChatChunk, Status>> + Send>>;

impl GrpcGateway {
    /// The codec's half of a call: ingress (tonic has decoded the message, up to its size
    /// limit, by now: this is the earliest the gateway can count the call in), the message
    /// into the canonical request, and the pipeline.
    async fn serve(
        &self,
        request: Request<pb::ChatRequest>,
        stream: bool,
    ) -> Result<Answer, Status> {
        let sent_id = request
            .metadata()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok());
        let path = if stream { CHAT_STREAM_PATH } else { CHAT_PATH };
        let headers = caller_headers(&request).with_target("POST", path);
        let mut call = self
            .gateway
            .ingress(Surface::Grpc, sent_id, headers)
            .await
            .map_err(|r| refusal_status(&r))?;
        if call.awaits_signature() {
            // No digest: the body was not one plain message; the signature cannot match.
            let verified = match request.extensions().get::<signed::SignedBody>() {
                Some(body) => call.verify_body(&body.0).await,
                None => Err(crate::auth::signed::invalid()),
            };
            if let Err(e) = verified {
                return Err(refusal_status(&call.refuse(e)));
            }
        }
        let chat = match convert::chat_request(request.into_inner(), stream) {
            Ok(c) => c,
            Err(e) => return Err(refusal_status(&call.refuse(e))),
        };
        Ok(self.gateway.serve(call, chat).await)
    }
}

#[tonic::async_trait]
impl pb::gateway_server::Gateway for GrpcGateway {
    async fn chat(
        &self,
        request: Request<pb::ChatRequest>,
    ) -> Result<Response<pb::ChatResponse>, Status> {
        match self.serve(request, false).await? {
            Answer::Complete(done) => {
                let mut resp = Response::new(convert::chat_response(done.response));
                head_metadata(resp.metadata_mut(), &done.head);
                Ok(resp)
            }
            // A unary call never opens a stream; should one come, it is refused cleanly.
            Answer::Stream(open) => Err(status(
                &Error::Internal {
                    detail: "a unary call was answered with a stream".to_owned(),
                },
                &open.head.request_id,
                "",
            )),
            Answer::Refused(refusal) => Err(refusal_status(&refusal)),
        }
    }

    type ChatStreamStream = ChunkStream;

    async fn chat_stream(
        &self,
        request: Request<pb::ChatRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        match self.serve(request, true).await? {
            Answer::Stream(open) => {
                let rid = open.head.request_id.clone();
                let stream = open.chunks.filter_map(move |step| {
                    let item = match step {
                        Delivered::Chunk(chunk) => Some(Ok(convert::chat_chunk(chunk))),
                        // The metadata went out when the stream opened: the status's
                        // trailers carry every attempt.
                        Delivered::Broken(error, trailer) => {
                            Some(Err(status(&error, &rid, &trailer.attempts)))
                        }
                        Delivered::Done(_) => None,
                    };
                    std::future::ready(item)
                });
                let mut resp = Response::new(Box::pin(stream) as ChunkStream);
                head_metadata(resp.metadata_mut(), &open.head);
                Ok(resp)
            }
            Answer::Complete(done) => Err(status(
                &Error::Internal {
                    detail: "a streaming call was answered without a stream".to_owned(),
                },
                &done.head.request_id,
                "",
            )),
            Answer::Refused(refusal) => Err(refusal_status(&refusal)),
        }
    }

    async fn embed(
        &self,
        request: Request<pb::EmbedRequest>,
    ) -> Result<Response<pb::EmbedResponse>, Status> {
        self.embed_call(request).await
    }

    async fn list_models(
        &self,
        request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let request_id = request_id(&request);
        let headers = caller_headers(&request).with_target("POST", LIST_MODELS_PATH);
        // A signed call signs the encoded ListModelsRequest, hashed on the way in.
        let body = request
            .extensions()
            .get::<signed::SignedBody>()
            .map(|b| b.0);
        if headers.signed.any() && body.is_none() {
            return Err(status(&crate::auth::signed::invalid(), &request_id, ""));
        }
        let models = self
            .gateway
            .visible_models(headers, body)
            .await
            .map_err(|e| status(&e, &request_id, ""))?
            .into_iter()
            .map(|id| pb::Model {
                id,
                owned_by: "switchyard".to_owned(),
                created: 0,
            })
            .collect();
        Ok(Response::new(pb::ListModelsResponse { models }))
    }
}

/// The method paths a signed call signs.
const CHAT_PATH: &str = "/switchyard.v1.Gateway/Chat";
const CHAT_STREAM_PATH: &str = "/switchyard.v1.Gateway/ChatStream";
const LIST_MODELS_PATH: &str = "/switchyard.v1.Gateway/ListModels";

/// The caller's key, security level and routing headers from gRPC metadata, and the
/// client's address as the network layer decided it.
fn caller_headers<T>(request: &Request<T>) -> CallerHeaders {
    let mut h = CallerHeaders::collect(request.metadata().iter().filter_map(|kv| match kv {
        tonic::metadata::KeyAndValueRef::Ascii(k, v) => Some((k.as_str(), v.as_bytes())),
        tonic::metadata::KeyAndValueRef::Binary(..) => None,
    }));
    h.client_addr = request
        .extensions()
        .get::<crate::network::ClientAddr>()
        .and_then(|c| c.0);
    h
}

fn request_id<T>(request: &Request<T>) -> String {
    crate::api::request_id_from(
        request
            .metadata()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok()),
    )
}

/// A refused call as its gRPC status.
fn refusal_status(refusal: &Refusal) -> Status {
    status(&refusal.error, &refusal.request_id, &refusal.attempts)
}

/// The gRPC status for an error: code from the table, the OpenAI message, and metadata.
pub fn status(error: &Error, request_id: &str, attempts: &str) -> Status {
    if let Error::Internal { detail } = error {
        tracing::error!(request_id, detail, "internal error");
    }
    let spec = error.spec();
    let fields = error.openai_fields(request_id);
    // Authentication and permission refusals name their reason in the message too, as
    // gRPC clients often show only the code and the message.
    let message = match (&fields.code, spec.status.as_u16()) {
        (Some(code), 401 | 403) => format!("{code}: {}", fields.message),
        _ => fields.message.clone(),
    };
    let mut st = Status::new(spec.grpc, message);
    let md = st.metadata_mut();
    insert(md, REQUEST_ID_HEADER, request_id);
    insert(md, "x-switchyard-error-type", &fields.kind);
    if let Some(code) = &fields.code {
        insert(md, "x-switchyard-error-code", code);
    }
    insert(md, "x-switchyard-http-status", spec.status.as_str());
    if let Some(after) = error.retry_after() {
        insert(
            md,
            "retry-after",
            &(after.as_secs_f64().ceil().max(1.0) as u64).to_string(),
        );
    }
    if !attempts.is_empty() {
        insert(md, ATTEMPTS_HEADER, attempts);
    }
    for (name, value) in error.extra_headers() {
        insert(md, name, &value);
    }
    st
}

fn head_metadata(md: &mut tonic::metadata::MetadataMap, head: &Head) {
    insert(md, REQUEST_ID_HEADER, &head.request_id);
    insert(md, PROVIDER_HEADER, &head.provider);
    insert(md, ATTEMPTS_HEADER, &head.attempts);
    for (name, value) in head.rate_limits.headers() {
        insert(md, name, &value);
    }
    insert(md, CACHE_HEADER, head.cache.as_str());
}

fn insert(md: &mut tonic::metadata::MetadataMap, key: &'static str, value: &str) {
    if let Ok(v) = MetadataValue::try_from(value) {
        md.insert(key, v);
    }
}

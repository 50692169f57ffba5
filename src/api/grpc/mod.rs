//! The gRPC service `switchyard.v1.Gateway`, plus health and reflection, over [`Gateway`].
//!
//! Status codes come from the same error table as HTTP statuses; the serving provider and
//! the attempts travel as response metadata, like the REST headers.

mod convert;

use std::{pin::Pin, sync::Arc};

use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status, metadata::MetadataValue};

use crate::{
    api::{ATTEMPTS_HEADER, PROVIDER_HEADER, REQUEST_ID_HEADER},
    auth::CallerHeaders,
    error::Error,
    failover::{Attempts, Failed},
    gateway::{Delivered, Gateway},
    telemetry::{Outcome, RequestRecord, Surface},
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
    routes.prepare().into_axum_router()
}

/// The `switchyard.v1.Gateway` implementation.
pub struct GrpcGateway {
    gateway: Arc<Gateway>,
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::ChatChunk, Status>> + Send>>;

#[tonic::async_trait]
impl pb::gateway_server::Gateway for GrpcGateway {
    async fn chat(
        &self,
        request: Request<pb::ChatRequest>,
    ) -> Result<Response<pb::ChatResponse>, Status> {
        let request_id = request_id(&request);
        // tonic has decoded the message (up to its size limit) by now; this is the earliest
        // the gateway can count the call in.
        let admitted = self
            .gateway
            .admit()
            .map_err(|e| status(&e, &request_id, None))?;
        let caller = caller_headers(request.metadata());
        let chat = convert::chat_request(request.into_inner(), false)
            .map_err(|e| status(&e, &request_id, None))?;
        let mut record =
            RequestRecord::start(request_id.clone(), Surface::Grpc, &chat.model, false);
        match self.gateway.chat(&chat, caller, admitted).await {
            Ok(served) => {
                record.served_by(&served.deployment);
                record.usage = served.value.usage.clone();
                let mut resp = Response::new(convert::chat_response(served.value));
                served_metadata(
                    resp.metadata_mut(),
                    &request_id,
                    &served.deployment.provider_name,
                    &served.attempts,
                );
                record.routed(&served.explain);
                record.attempts = served.attempts;
                record.first_byte();
                record.finish(Outcome::Ok);
                Ok(resp)
            }
            Err(failed) => Err(failure(record, failed)),
        }
    }

    type ChatStreamStream = ChunkStream;

    async fn chat_stream(
        &self,
        request: Request<pb::ChatRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let request_id = request_id(&request);
        let admitted = self
            .gateway
            .admit()
            .map_err(|e| status(&e, &request_id, None))?;
        let caller = caller_headers(request.metadata());
        let chat = convert::chat_request(request.into_inner(), true)
            .map_err(|e| status(&e, &request_id, None))?;
        let mut record = RequestRecord::start(request_id.clone(), Surface::Grpc, &chat.model, true);
        match self.gateway.chat_stream(&chat, caller, admitted).await {
            Ok(served) => {
                record.served_by(&served.deployment);
                let mut md = tonic::metadata::MetadataMap::new();
                served_metadata(
                    &mut md,
                    &request_id,
                    &served.deployment.provider_name,
                    &served.attempts,
                );
                record.routed(&served.explain);
                record.attempts = served.attempts;
                let rid = request_id.clone();
                let stream = served
                    .value
                    .deliver(record, chat.wants_stream_usage())
                    .filter_map(move |step| {
                        let item = match step {
                            Delivered::Chunk(chunk) => Some(Ok(convert::chat_chunk(chunk))),
                            Delivered::Broken(error) => Some(Err(status(&error, &rid, None))),
                            Delivered::Done => None,
                        };
                        std::future::ready(item)
                    });
                let mut resp = Response::new(Box::pin(stream) as ChunkStream);
                *resp.metadata_mut() = md;
                Ok(resp)
            }
            Err(failed) => Err(failure(record, failed)),
        }
    }

    async fn list_models(
        &self,
        request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let request_id = request_id(&request);
        let models = self
            .gateway
            .visible_models(caller_headers(request.metadata()))
            .map_err(|e| status(&e, &request_id, None))?
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

/// The caller's key, security level and routing headers from gRPC metadata.
fn caller_headers(md: &tonic::metadata::MetadataMap) -> CallerHeaders {
    CallerHeaders::collect(md.iter().filter_map(|kv| match kv {
        tonic::metadata::KeyAndValueRef::Ascii(k, v) => Some((k.as_str(), v.as_bytes())),
        tonic::metadata::KeyAndValueRef::Binary(..) => None,
    }))
}

fn request_id<T>(request: &Request<T>) -> String {
    crate::api::request_id_from(
        request
            .metadata()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok()),
    )
}

fn failure(mut record: RequestRecord, failed: Failed) -> Status {
    let st = status(&failed.error, &record.request_id, Some(&failed.attempts));
    if let Error::Upstream { provider, .. } = &failed.error {
        record.provider = Some(provider.clone());
    }
    record.routed(&failed.explain);
    record.attempts = failed.attempts;
    record.finish(Outcome::Error(failed.error.spec().status.as_u16()));
    st
}

/// The gRPC status for an error: code from the table, the OpenAI message, and metadata.
pub fn status(error: &Error, request_id: &str, attempts: Option<&Attempts>) -> Status {
    if let Error::Internal { detail } = error {
        tracing::error!(request_id, detail, "internal error");
    }
    let spec = error.spec();
    let fields = error.openai_fields(request_id);
    let mut st = Status::new(spec.grpc, fields.message);
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
    if let Some(a) = attempts.filter(|a| !a.list().is_empty()) {
        insert(md, ATTEMPTS_HEADER, &a.header_value());
    }
    st
}

fn served_metadata(
    md: &mut tonic::metadata::MetadataMap,
    request_id: &str,
    provider: &str,
    attempts: &Attempts,
) {
    insert(md, REQUEST_ID_HEADER, request_id);
    insert(md, PROVIDER_HEADER, provider);
    insert(md, ATTEMPTS_HEADER, &attempts.header_value());
}

fn insert(md: &mut tonic::metadata::MetadataMap, key: &'static str, value: &str) {
    if let Ok(v) = MetadataValue::try_from(value) {
        md.insert(key, v);
    }
}

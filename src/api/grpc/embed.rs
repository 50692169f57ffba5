//! The `Embed` RPC: the same ingress, signature check, pipeline and status mapping as
//! `Chat`, over [`EmbedRequest`] (see [`crate::embeddings`]).

use serde_json::Value;
use tonic::{Request, Response, Status};

use super::{GrpcGateway, caller_headers, head_metadata, pb, refusal_status, signed};
use crate::{
    api::REQUEST_ID_HEADER,
    embeddings::{EmbedInput, EmbedRequest, EmbedResponse},
    error::Error,
    pipeline::EmbedAnswer,
    telemetry::Surface,
};

/// The method path a signed call signs.
const EMBED_PATH: &str = "/switchyard.v1.Gateway/Embed";

impl GrpcGateway {
    /// Ingress, the signed body's check, the message into the canonical request, the
    /// pipeline, and the answer as the RPC's response or status.
    pub(super) async fn embed_call(
        &self,
        request: Request<pb::EmbedRequest>,
    ) -> Result<Response<pb::EmbedResponse>, Status> {
        let sent_id = request
            .metadata()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok());
        let headers = caller_headers(&request).with_target("POST", EMBED_PATH);
        let mut call = self
            .gateway
            .ingress(Surface::Grpc, sent_id, headers)
            .await
            .map_err(|r| refusal_status(&r))?;
        call.for_embeddings();
        if call.awaits_signature() {
            let verified = match request.extensions().get::<signed::SignedBody>() {
                Some(body) => call.verify_body(&body.0).await,
                None => Err(crate::auth::signed::invalid()),
            };
            if let Err(e) = verified {
                return Err(refusal_status(&call.refuse(e)));
            }
        }
        let embed = match embed_request(request.into_inner()) {
            Ok(r) => r,
            Err(e) => return Err(refusal_status(&call.refuse(e))),
        };
        match self.gateway.serve_embeddings(call, embed).await {
            EmbedAnswer::Complete(done) => {
                let mut resp = Response::new(embed_response(done.response));
                head_metadata(resp.metadata_mut(), &done.head);
                Ok(resp)
            }
            EmbedAnswer::Refused(refusal) => Err(refusal_status(&refusal)),
        }
    }
}

/// The message as the canonical request: texts or token lists, never both.
pub fn embed_request(req: pb::EmbedRequest) -> Result<EmbedRequest, Error> {
    let input = match (req.input.is_empty(), req.tokens.is_empty()) {
        (false, true) => EmbedInput::Texts(req.input),
        (true, false) => EmbedInput::TokenLists(req.tokens.into_iter().map(|t| t.tokens).collect()),
        (true, true) => {
            return Err(Error::bad_param(
                "input",
                "one of `input` (texts) and `tokens` must be set",
            ));
        }
        (false, false) => {
            return Err(Error::bad_param(
                "input",
                "set `input` (texts) or `tokens`, not both",
            ));
        }
    };
    let extra = if req.extra_json.trim().is_empty() {
        crate::chat::Extra::new()
    } else {
        match serde_json::from_str::<Value>(&req.extra_json) {
            Ok(Value::Object(map)) => map,
            _ => {
                return Err(Error::bad_param(
                    "extra_json",
                    "`extra_json` must be a JSON object",
                ));
            }
        }
    };
    Ok(EmbedRequest {
        model: req.model,
        input,
        dimensions: req.dimensions,
        encoding_format: None,
        user: req.user,
        extra,
    })
}

/// The canonical answer as the message.
pub fn embed_response(response: EmbedResponse) -> pb::EmbedResponse {
    let usage = pb::Usage {
        prompt_tokens: response.usage.prompt_tokens,
        completion_tokens: 0,
        total_tokens: response.usage.total_tokens,
        cached_tokens: 0,
        reasoning_tokens: 0,
    };
    pb::EmbedResponse {
        model: response.model,
        data: response
            .data
            .into_iter()
            .enumerate()
            .map(|(i, embedding)| pb::Embedding {
                index: u32::try_from(i).unwrap_or(u32::MAX),
                embedding,
            })
            .collect(),
        usage: Some(usage),
    }
}

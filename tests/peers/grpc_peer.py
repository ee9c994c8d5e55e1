"""gRPC peer for the end-to-end tests, on `grpcio` (PyPI), with raw-bytes messages (no protoc).

  grpc_peer.py serve NAME          server on 127.0.0.1 (h2c); prints {"listening": port}, then one
                                   JSON line per call ({"server", "method", "request", "metadata"})
      /test.Echo/Unary             answers b"NAME:" + request; trailers x-served-by: NAME
      /test.Echo/Stream            three messages "i:NAME:" + request; trailers x-served-by, x-count
      /test.Echo/Fail              NOT_FOUND "no such thing", trailer x-served-by
  grpc_peer.py call TARGET METHOD PAYLOAD
                                   one call (unary for Unary/Fail, server streaming for Stream);
                                   prints {"code", "details", "messages", "trailers", "initial"}
"""

import json
import sys
from concurrent import futures

import grpc


def emit(value):
    print(json.dumps(value), flush=True)


def serve(name):
    def record(method, request, context):
        metadata = {k: v for k, v in context.invocation_metadata() if not k.endswith("-bin")}
        emit({"server": name, "method": method, "request": request.decode(), "metadata": metadata})

    def unary(request, context):
        record("Unary", request, context)
        context.send_initial_metadata((("x-initial", name),))
        context.set_trailing_metadata((("x-served-by", name),))
        return name.encode() + b":" + request

    def stream(request, context):
        record("Stream", request, context)
        context.set_trailing_metadata((("x-served-by", name), ("x-count", "3")))
        for i in range(3):
            yield f"{i}:{name}:".encode() + request

    def fail(request, context):
        record("Fail", request, context)
        context.set_trailing_metadata((("x-served-by", name),))
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")

    handler = grpc.method_handlers_generic_handler(
        "test.Echo",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
            "Fail": grpc.unary_unary_rpc_method_handler(fail),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    emit({"listening": port})
    server.wait_for_termination()


def call(target, method, payload):
    options = [("grpc.enable_http_proxy", 0)]
    with grpc.insecure_channel(target, options=options) as channel:
        path = f"/test.Echo/{method}"
        result = {"code": "OK", "details": None, "messages": [], "trailers": {}, "initial": {}}
        try:
            if method == "Stream":
                responses = channel.unary_stream(path)(payload.encode(), timeout=10, metadata=(("x-caller", "test"),))
                result["messages"] = [m.decode() for m in responses]
                call = responses
            else:
                response, call = channel.unary_unary(path).with_call(payload.encode(), timeout=10, metadata=(("x-caller", "test"),))
                result["messages"] = [response.decode()]
            result["trailers"] = dict(call.trailing_metadata() or ())
            result["initial"] = dict(call.initial_metadata() or ())
        except grpc.RpcError as e:
            result["code"] = e.code().name
            result["details"] = e.details()
            result["trailers"] = dict(e.trailing_metadata() or ())
        emit(result)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        call(sys.argv[2], sys.argv[3], sys.argv[4])

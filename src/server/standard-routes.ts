/**
 * The standard gRPC services every Tessera server carries: grpc.health.v1.Health and server reflection (v1 and
 * v1alpha). Apply after the API routes: the services already on the router are the ones health reports on and
 * reflection describes, so a service added to the API later shows up in both without a change here.
 */
import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { ServerReflection as ServerReflectionV1 } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1alpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { healthService } from "./health.js";
import type { Readiness } from "./readiness.js";
import { reflectionServices } from "./reflection.js";

export interface StandardRouteDeps {
  readiness: Readiness;
}

export function standardRoutes(deps: StandardRouteDeps): (router: ConnectRouter) => void {
  return (router) => {
    const api = servicesOn(router);
    const standard = [Health, ServerReflectionV1, ServerReflectionV1alpha];
    const reflection = reflectionServices([...api, ...standard]);
    router.service(
      Health,
      healthService({
        readiness: deps.readiness,
        storeServices: api.map((s) => s.typeName),
        localServices: standard.map((s) => s.typeName),
      }),
    );
    router.service(ServerReflectionV1, reflection.v1);
    router.service(ServerReflectionV1alpha, reflection.v1alpha);
  };
}

/** The services registered on the router so far, in registration order. */
function servicesOn(router: ConnectRouter): DescService[] {
  const byName = new Map<string, DescService>();
  for (const h of router.handlers) byName.set(h.service.typeName, h.service);
  return [...byName.values()];
}

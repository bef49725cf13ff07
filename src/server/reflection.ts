/**
 * gRPC server reflection (https://github.com/grpc/grpc/blob/master/doc/server-reflection.md), v1 and v1alpha, over a
 * protobuf-es file registry built from the generated descriptors of the services passed in. Every file answer holds
 * the file asked for first, then all its transitive imports (google/protobuf/*.proto included), as serialized
 * FileDescriptorProtos, so a client that knows nothing else can decode every message of the service.
 */
import {
  createFileRegistry,
  toBinary,
  type DescFile,
  type DescService,
  type FileRegistry,
} from "@bufbuild/protobuf";
import { nestedTypes } from "@bufbuild/protobuf/reflect";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ServiceImpl } from "@connectrpc/connect";
import { ServerReflection as ServerReflectionV1 } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1alpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";

/** A reflection request of either version (their shapes are the same). */
export interface ReflectionRequest {
  host: string;
  messageRequest:
    | { case: "fileByFilename" | "fileContainingSymbol" | "allExtensionNumbersOfType" | "listServices"; value: string }
    | { case: "fileContainingExtension"; value: { containingType: string; extensionNumber: number } }
    | { case: undefined; value?: undefined };
}

/** The message_response oneof of a reflection response, of either version. */
export type ReflectionAnswer =
  | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
  | { case: "allExtensionNumbersResponse"; value: { baseTypeName: string; extensionNumber: number[] } }
  | { case: "listServicesResponse"; value: { service: { name: string }[] } }
  | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } };

/** What reflection knows: the served services, the registry of their files, and every symbol those files declare. */
export class ReflectionIndex {
  readonly registry: FileRegistry;
  private readonly serviceNames: string[];
  private readonly symbols = new Map<string, DescFile>();
  private readonly encoded = new Map<string, Uint8Array>();

  constructor(services: readonly DescService[]) {
    this.serviceNames = [...new Set(services.map((s) => s.typeName))];
    this.registry = createFileRegistry(
      ...services.map((s) =>
        createFileRegistry(s.file.proto, (name) => s.file.dependencies.find((d) => d.proto.name === name)),
      ),
    );
    for (const file of this.registry.files) this.indexSymbols(file);
  }

  answer(req: ReflectionRequest): ReflectionAnswer {
    const r = req.messageRequest;
    switch (r.case) {
      case "listServices":
        return { case: "listServicesResponse", value: { service: this.serviceNames.map((name) => ({ name })) } };
      case "fileByFilename":
        return this.files(this.registry.getFile(r.value), `file not found: ${r.value}`);
      case "fileContainingSymbol":
        return this.files(this.symbols.get(stripDot(r.value)), `symbol not found: ${r.value}`);
      case "fileContainingExtension": {
        const base = this.registry.getMessage(stripDot(r.value.containingType));
        const ext = base && this.registry.getExtensionFor(base, r.value.extensionNumber);
        return this.files(ext?.file, `extension not found: ${r.value.containingType} ${r.value.extensionNumber}`);
      }
      case "allExtensionNumbersOfType": {
        const name = stripDot(r.value);
        if (!this.registry.getMessage(name)) return notFound(`type not found: ${r.value}`);
        const numbers: number[] = [];
        for (const t of this.registry) if (t.kind === "extension" && t.extendee.typeName === name) numbers.push(t.number);
        return {
          case: "allExtensionNumbersResponse",
          value: { baseTypeName: name, extensionNumber: numbers.sort((a, b) => a - b) },
        };
      }
      default:
        return { case: "errorResponse", value: { errorCode: Code.InvalidArgument, errorMessage: "empty request" } };
    }
  }

  /** The file and its transitive imports (each once, the file itself first), serialized. */
  private files(file: DescFile | undefined, missing: string): ReflectionAnswer {
    if (!file) return notFound(missing);
    const seen = new Set<string>();
    const out: Uint8Array[] = [];
    const visit = (f: DescFile) => {
      if (seen.has(f.proto.name)) return;
      seen.add(f.proto.name);
      out.push(this.encode(f));
      f.dependencies.forEach(visit);
    };
    visit(file);
    return { case: "fileDescriptorResponse", value: { fileDescriptorProto: out } };
  }

  private encode(file: DescFile): Uint8Array {
    let bytes = this.encoded.get(file.proto.name);
    if (!bytes) {
      bytes = toBinary(FileDescriptorProtoSchema, file.proto);
      this.encoded.set(file.proto.name, bytes);
    }
    return bytes;
  }

  /** Services, methods, messages, fields, oneofs, enums, enum values and extensions, by fully qualified name. */
  private indexSymbols(file: DescFile): void {
    const add = (name: string) => this.symbols.set(name, file);
    for (const t of nestedTypes(file)) {
      add(t.typeName);
      switch (t.kind) {
        case "service":
          t.methods.forEach((m) => add(`${t.typeName}.${m.name}`));
          break;
        case "message":
          t.fields.forEach((f) => add(`${t.typeName}.${f.name}`));
          t.oneofs.forEach((o) => add(`${t.typeName}.${o.name}`));
          break;
        case "enum": {
          // Enum values are scoped beside their enum, not inside it (tessera.v1.TOKEN_TYPE_ACCESS).
          const scope = t.typeName.slice(0, t.typeName.length - t.name.length);
          t.values.forEach((v) => add(`${scope}${v.name}`));
          break;
        }
        case "extension":
          break;
      }
    }
  }
}

/** ServerReflection v1 and v1alpha implementations over one index. */
export function reflectionServices(services: readonly DescService[]): {
  v1: ServiceImpl<typeof ServerReflectionV1>;
  v1alpha: ServiceImpl<typeof ServerReflectionV1alpha>;
} {
  const index = new ReflectionIndex(services);
  return {
    v1: {
      async *serverReflectionInfo(requests) {
        for await (const req of requests) {
          yield { validHost: req.host, originalRequest: req, messageResponse: index.answer(req) };
        }
      },
    },
    v1alpha: {
      async *serverReflectionInfo(requests) {
        for await (const req of requests) {
          yield { validHost: req.host, originalRequest: req, messageResponse: index.answer(req) };
        }
      },
    },
  };
}

function notFound(message: string): ReflectionAnswer {
  return { case: "errorResponse", value: { errorCode: Code.NotFound, errorMessage: message } };
}

function stripDot(name: string): string {
  return name.startsWith(".") ? name.slice(1) : name;
}

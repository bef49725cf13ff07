/**
 * A TCP relay in front of a Redis (or any server) that a test can close like a gate: while held, what clients send
 * is kept back (and can be read) instead of reaching the server; release() sends it on. A test sees exactly when a
 * command has been sent (the call that sent it is waiting for the store), and decides when it gets its answer,
 * without sleeping and without pausing the server for everyone.
 */
import net from "node:net";

export class TcpGate {
  private holding = false;
  private kept: Array<{ to: net.Socket; chunk: Buffer }> = [];
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  /** A gate on a free loopback port relaying to 127.0.0.1:targetPort, open. */
  static async start(targetPort: number): Promise<TcpGate> {
    let gate: TcpGate | undefined;
    const server = net.createServer((client) => gate!.relay(client, targetPort));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    gate = new TcpGate(server, (server.address() as net.AddressInfo).port);
    return gate;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** From now on, bytes from clients to the server are kept back. */
  hold(): void {
    this.holding = true;
  }

  /** Everything kept back since hold(), as text (RESP is readable: command names appear as they were sent). */
  held(): string {
    return Buffer.concat(this.kept.map((k) => k.chunk)).toString("latin1");
  }

  /** Sends what was kept back, in order, and relays freely again. */
  release(): void {
    this.holding = false;
    for (const { to, chunk } of this.kept.splice(0)) if (!to.destroyed) to.write(chunk);
  }

  /** Stops listening and cuts every relayed connection. */
  async close(): Promise<void> {
    this.release();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private relay(client: net.Socket, targetPort: number): void {
    const upstream = net.connect(targetPort, "127.0.0.1");
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.once("close", () => this.sockets.delete(s));
      s.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
    client.on("data", (chunk: Buffer) => {
      if (this.holding) this.kept.push({ to: upstream, chunk });
      else upstream.write(chunk);
    });
    upstream.pipe(client);
  }
}

/** The one error configuration loading throws: `KEY: what is wrong` (main.ts prints it and exits 2). */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(
    readonly key: string,
    message: string,
  ) {
    super(`${key}: ${message}`);
  }
}

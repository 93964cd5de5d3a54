#!/usr/bin/env node
/**
 * The faultline command. `start` runs the bridge; data commands work beside a
 * running bridge (through its API) or alone (on the database directly).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { openDataAccess } from './cli/data-access.js';
import { loadConfig } from './config/load.js';
import { isFaultlineError } from './errors/catalogue.js';
import { runGuidesCheck } from './guides/check.js';
import { backtestCommand } from './influx/backtest.js';
import { EXIT, runBridge } from './main.js';
import { withOwnerAccess } from './owners/cli.js';
import { runRulesCheck, runRulesTest } from './rules/cli.js';
import { ruleJsonSchemaText } from './rules/schema.js';

const program = new Command();
program
  .name('faultline')
  .description('Bridge from appliance self-diagnosis (MQTT) to service tickets and owner guides')
  .option('-c, --config <file>', 'YAML config file (default: $FAULTLINE_CONFIG or built-in defaults)')
  .showHelpAfterError();

program
  .command('start')
  .description('run the bridge')
  .action(async () => {
    await runBridge(configFile());
  });

const config = program.command('config').description('configuration tools');
config
  .command('check')
  .description('validate the config (file + environment) and print the effective values, secrets redacted')
  .action(() => {
    const c = loadConfig({ file: configFile() });
    const redacted = JSON.parse(JSON.stringify(c), (key, value) =>
      /token|password|secret/i.test(key) && typeof value === 'string' ? '[redacted]' : value,
    );
    process.stdout.write(`${JSON.stringify(redacted, null, 2)}\n`);
  });

const devices = program.command('devices').description('the device registry');
devices
  .command('add')
  .description('register one device')
  .requiredOption('--id <id>', 'device id (also its MQTT client id and username)')
  .requiredOption('--model <model>', 'model, e.g. AC-9000')
  .requiredOption('--secret <secret>', 'device secret, at least 16 characters (stored only as a salted hash)')
  .option('--owner <ownerId>', 'owner id')
  .option('--locale <locale>', 'owner locale, e.g. zh-CN or en')
  .option('--firmware <version>', 'firmware version')
  .option('--region <region>', 'region')
  .option('--batch <batch>', 'production batch')
  .action(async (o: Record<string, string | undefined>) => {
    await withData(async (data) => {
      const device = await data.addDevice({
        id: o.id,
        model: o.model,
        secret: o.secret,
        ownerId: o.owner,
        ownerLocale: o.locale,
        firmware: o.firmware,
        region: o.region,
        batch: o.batch,
      });
      print(device);
    });
  });
devices
  .command('import <file>')
  .description(
    'bulk-register devices from CSV (header: id,model,firmware,owner_id,owner_locale,region,batch,secret)',
  )
  .action(async (file: string) => {
    const csv = await readFile(file, 'utf8');
    await withData(async (data) => {
      const result = await data.importDevices(csv);
      process.stderr.write(`imported ${result.imported} devices (via ${data.via})\n`);
      print(result);
    });
  });
devices
  .command('list')
  .description('list devices (JSON, one page)')
  .option('--model <model>')
  .option('--owner <ownerId>')
  .option('--limit <n>', 'page size', '100')
  .option('--cursor <cursor>')
  .action(async (o: Record<string, string | undefined>) => {
    await withData(async (data) => {
      print(
        await data.listDevices({
          model: o.model,
          ownerId: o.owner,
          limit: Number(o.limit),
          cursor: o.cursor,
        }),
      );
    });
  });
devices.command('get <id>').action(async (id: string) => {
  await withData(async (data) => print(await data.getDevice(id)));
});
for (const [name, disabled] of [
  ['disable', true],
  ['enable', false],
] as const) {
  devices
    .command(`${name} <id>`)
    .description(`${name} a device (a disabled device is refused at CONNECT)`)
    .action(async (id: string) => {
      await withData(async (data) => print(await data.setDisabled(id, disabled)));
    });
}

program
  .command('deadletters')
  .description('list refused messages with their reasons (newest first)')
  .addOption(new Option('--reason <reason>', 'only this reason'))
  .option('--device <id>', 'only this device')
  .option('--limit <n>', 'page size', '50')
  .option('--cursor <cursor>')
  .action(async (o: Record<string, string | undefined>) => {
    await withData(async (data) => {
      print(
        await data.listDeadLetters({
          reason: o.reason,
          deviceId: o.device,
          limit: Number(o.limit),
          cursor: o.cursor,
        }),
      );
    });
  });

// The rule tools may define this group too; backtest joins it rather than making a second one.
const rulesGroup =
  program.commands.find((c) => c.name() === 'rules') ?? program.command('rules').description('rule tools');
const ruleIo = { stdout: process.stdout, stderr: process.stderr };
rulesGroup
  .command('check [paths...]')
  .description(
    'validate rule files; errors as file:line:col; warns about rules that cannot clear, too-short for, unknown metrics',
  )
  .option('--strict', 'fail on warnings too')
  .action(async (paths: string[], o: { strict?: boolean }) => {
    process.exitCode = await runRulesCheck(paths.length ? paths : ['rules'], ruleIo, {
      strict: o.strict === true,
    });
  });
rulesGroup
  .command('test [paths...]')
  .description('run the rule unit tests (*.test.yaml) beside the rules; a readable diff on failure')
  .action(async (paths: string[]) => {
    process.exitCode = await runRulesTest(paths.length ? paths : ['rules'], ruleIo);
  });
rulesGroup
  .command('schema [file]')
  .description('write the JSON Schema of rule files (for editor autocompletion), to stdout or a file')
  .action(async (file?: string) => {
    const text = ruleJsonSchemaText();
    if (file) await writeFile(file, text);
    else process.stdout.write(text);
  });
rulesGroup
  .command('backtest [paths...]')
  .description(
    'evaluate rules over the history in InfluxDB: the tickets that would have opened, and how many per day',
  )
  .requiredOption(
    '--from <time>',
    'start: ISO 8601 time or date (UTC), or a duration back from now such as 30d',
  )
  .option('--to <time>', 'end (exclusive), same forms; default now')
  .option('--device <id>', 'only this device')
  .option('--model <model>', 'only devices of this model')
  .option('--json', 'print the report as JSON')
  .option('--max-items <n>', 'most samples and fault events to load (they are replayed in memory)')
  .action(async (paths: string[], o: Record<string, string | boolean | undefined>) => {
    process.exitCode = await backtestCommand({
      config: loadConfig({ file: configFile() }),
      paths,
      from: String(o.from),
      to: o.to as string | undefined,
      device: o.device as string | undefined,
      model: o.model as string | undefined,
      json: o.json === true,
      maxItems: o.maxItems as string | undefined,
      stdout: process.stdout,
      stderr: process.stderr,
    });
  });

const owners = program.command('owners').description('owners of appliances, as their apps log in');
owners
  .command('add')
  .description('register an owner (the credential their app presents: username owner:<id>)')
  .requiredOption('--id <id>', 'owner id (pseudonymous; the same as devices --owner)')
  .requiredOption(
    '--secret <secret>',
    'owner secret, at least 16 random characters (stored only as a salted hash)',
  )
  .requiredOption('--locale <locale>', 'language of guides and surveys, e.g. zh-CN or en')
  .option('--timezone <tz>', 'IANA time zone for quiet hours, e.g. Asia/Shanghai')
  .option('--quiet-hours <HH:MM-HH:MM|off>', 'no notifications then, except DANGER')
  .option('--push-channel <name>', 'push service of the token, e.g. fcm, apns, hms')
  .option('--push-token <token>', "the app's token for that push service")
  .action(async (o: Record<string, string | undefined>) => {
    await withOwnerAccess(loadConfig({ file: configFile() }), async (access) => {
      const owner = await access.add({
        id: o.id!,
        secret: o.secret!,
        locale: o.locale!,
        ...(o.timezone ? { timezone: o.timezone } : {}),
        ...(o.quietHours ? { quietHours: o.quietHours } : {}),
        ...(o.pushChannel ? { pushChannel: o.pushChannel } : {}),
        ...(o.pushToken ? { pushToken: o.pushToken } : {}),
      });
      process.stderr.write(`owner ${owner.id} registered (via ${access.via})\n`);
      print(owner);
    });
  });

const guides = program.command('guides').description('troubleshooting guides for owners');
guides
  .command('check [paths...]')
  .description(
    'validate guide files (default: guides/); with --rules, every rule needs a guide in each locale',
  )
  .option('--rules <paths>', 'rule files or directories, comma-separated, to check coverage against')
  .option('--locales <list>', 'locales every rule needs a guide in (with --rules)', 'zh-CN,en')
  .option('--strict', 'warnings fail the check too')
  .action((paths: string[], o: { rules?: string; locales: string; strict?: boolean }) => {
    const list = (text: string) =>
      text
        .split(',')
        .map((p) => p.trim())
        .filter(Boolean);
    process.exitCode = runGuidesCheck(
      paths.length > 0 ? paths : ['guides'],
      { stdout: process.stdout, stderr: process.stderr },
      {
        ...(o.rules ? { rules: list(o.rules) } : {}),
        requireLocales: list(o.locales),
        strict: o.strict === true,
      },
    );
  });

function configFile(): string | undefined {
  return (program.opts() as { config?: string }).config ?? process.env.FAULTLINE_CONFIG;
}

async function withData(
  fn: (data: Awaited<ReturnType<typeof openDataAccess>>) => Promise<void>,
): Promise<void> {
  const data = await openDataAccess(loadConfig({ file: configFile() }));
  try {
    await fn(data);
  } finally {
    await data.close();
  }
}

function print(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

program.parseAsync(process.argv).catch((err: unknown) => {
  if (isFaultlineError(err)) {
    process.stderr.write(`faultline: ${err.code}: ${err.message}\n`);
    if (err.details) process.stderr.write(`${JSON.stringify(err.details, null, 2)}\n`);
    process.exit(
      err.code === 'FL_CONFIG_INVALID'
        ? EXIT.config
        : err.code === 'FL_DATA_DIR_LOCKED'
          ? EXIT.locked
          : EXIT.failure,
    );
  }
  process.stderr.write(`faultline: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(EXIT.failure);
});

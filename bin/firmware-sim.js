#!/usr/bin/env node
// Runs the compiled simulator: `npm run build` first (in development: npx tsx firmware-sim/cli.ts).
import '../dist/firmware-sim/cli.js';

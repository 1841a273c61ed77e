export * from './common.js';
export * from './accounts.js';
export * from './devices.js';
export * from './uploads.js';
export * from './clips.js';
export * from './alerts.js';

// What a JavaScript plugin can reach: `GET /sandbox` reports its
// environment, arguments, preopened directories and whether it can make a
// TCP socket; `GET /throw` throws.

import { Response } from 'plinth:platform/types@0.1.0';
import { getEnvironment, getArguments } from 'wasi:cli/environment@0.2.12';
import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';
import { instanceNetwork } from 'wasi:sockets/instance-network@0.2.12';
import { createTcpSocket } from 'wasi:sockets/tcp-create-socket@0.2.12';

function tcp() {
  try {
    const socket = createTcpSocket('ipv4');
    socket.startBind(instanceNetwork(), { tag: 'ipv4', val: { port: 0, address: [127, 0, 0, 1] } });
    return true;
  } catch {
    return false;
  }
}

export const handler = {
  routes() {
    return ['GET /sandbox', 'GET /throw'];
  },

  handle(req) {
    if (req.route() === 'GET /throw') throw new Error('the probe was asked to throw');
    const report = [
      `env=${getEnvironment().length}`,
      `args=${getArguments().length}`,
      `preopens=${getDirectories().length}`,
      `tcp_socket=${tcp()}`,
      `process=${typeof process}`,
    ];
    const response = new Response(200);
    response.setBody(new TextEncoder().encode(report.join('\n') + '\n'));
    return response;
  },
};

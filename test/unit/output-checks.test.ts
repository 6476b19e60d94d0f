/**
 * The built-in models' declared output checks: each passes what its model really produces and
 * names the problem in outputs that break its contract.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  builtinOutputCheck,
  checkChatOutput,
  checkEchoOutput,
  checkEmbeddingOutput,
  createBuiltinModels,
  type ModelRuntime,
} from '../../actors/index.js';

const ctx = { signal: new AbortController().signal };
const [echo, chat, embed] = createBuiltinModels() as [ModelRuntime, ModelRuntime, ModelRuntime];

describe('output checks', () => {
  test('real outputs of every built-in model pass their own check', async () => {
    const outputs: [ModelRuntime, unknown][] = [
      [echo, await echo.run({ a: 1 }, {}, ctx)],
      [chat, await chat.run('Tell me about the fox', { max_tokens: 12 }, ctx)],
      [chat, await chat.run('Tell me about the fox', { max_tokens: 1 }, ctx)],
      [embed, await embed.run(['the quick brown fox', 'jumps'], { dimensions: 64 }, ctx)],
    ];
    for (const [model, output] of outputs) {
      assert.ok(model.checkOutput, `${model.name} declares checks`);
      assert.equal(
        model.checkOutput(output),
        undefined,
        `${model.name}: ${JSON.stringify(output)}`,
      );
      assert.equal(builtinOutputCheck(model.name), model.checkOutput);
    }
    assert.equal(builtinOutputCheck('not-a-builtin'), undefined);
  });

  test('broken outputs are named', () => {
    assert.match(String(checkEchoOutput('text')), /echo field/);
    assert.match(
      String(checkChatOutput({ text: 'hi', finish_reason: 'eos', usage: {} })),
      /finish_reason/,
    );
    assert.match(
      String(
        checkChatOutput({
          text: 'hi there',
          finish_reason: 'stop',
          usage: { prompt_tokens: 2, completion_tokens: 0 },
        }),
      ),
      /no completion tokens/,
    );
    const unit = [0.6, 0.8];
    const ok = { embeddings: [unit], dimensions: 2, usage: { prompt_tokens: 1 } };
    assert.equal(checkEmbeddingOutput(ok), undefined);
    assert.match(String(checkEmbeddingOutput({ ...ok, embeddings: [[0.6, 0.9]] })), /unit length/);
    assert.match(String(checkEmbeddingOutput({ ...ok, embeddings: [[NaN, 1]] })), /non-finite/);
    assert.match(String(checkEmbeddingOutput({ ...ok, dimensions: 3 })), /3 dimensions/);
  });
});

// Seed: "Tools" (the flight example), from the tool definition to the second call.
// The seed's JavaScript here does not run as written; the differences, each marked `// differs:`, are:
// - `messages` is never defined in the seed's JavaScript tools section: it is the conversation of the
//   seed's Python tools section (the travel-assistant system message and "When is the next flight
//   from Miami to Seattle?");
// - the first call is assigned to `result` but read as `response`: it is assigned to `response`;
// - "Tool call: " + tool_calls prints "[object Object]": the calls are JSON.stringify'd;
// - `tool_call.apply(applyToolCall)`: a tool call is a plain object without `apply`, so it is
//   `applyToolCall(tool_call)`;
// - `tool_params.map(window[call.name])`: `window` does not exist in Node.js and the arguments are an
//   object, not an array; the function is looked up in a table of this module's functions and called
//   with the arguments in the order of the tool's `required` list (the seed's Python does the same
//   with `locals()[function_name](**function_args)`);
// - `{ role: "tool", tool_call_id = tool_call.id, content = tool_response }` is a SyntaxError: written
//   with `:`, and `content` must be a string, so the function's result is JSON.stringify'd;
// - the second call is assigned to `result` and never read: the harness prints its answer;
// - the first call is greedy (`temperature: 0`): sampled at the default temperature, the 135M model
//   now and then writes calls or an argument until the context is full (finish_reason "length", once
//   in CI), and the seed's code reads `tool_calls` without looking at the finish reason. The Python
//   version of this example (tests/e2e/test_tools_and_json.py) is greedy for the same reason.
import ModelClient from "@azure-rest/ai-inference";
import { isUnexpected } from "@azure-rest/ai-inference";
import { AzureKeyCredential } from "@azure/core-auth";

const client = new ModelClient(
    process.env.AZURE_INFERENCE_ENDPOINT, 
    new AzureKeyCredential(process.env.AZURE_INFERENCE_CREDENTIAL)
);

const flight_info = {
    name: "get_flight_info",
    description: "Returns information about the next flight between two cities. This includes the name of the airline, flight number and the date and time of the next flight",
    parameters: {
        type: "object",
        properties: {
            origin_city: {
                type: "string",
                description: "The name of the city where the flight originates",
            },
            destination_city: {
                type: "string",
                description: "The flight destination city",
            },
        },
        required: ["origin_city", "destination_city"],
    },
}

const tools = [
    {
        type: "function",
        function: flight_info,
    },
];

function get_flight_info(loc_origin, loc_destination) {
    return {
        info: "There are no flights available from " + loc_origin + " to " + loc_destination + ". You should take a train, specially if it helps to reduce CO2 emissions."
    }
}

// differs: the conversation of the seed's Python tools section
var messages = [
    { role: "system", content: "You are a helpful assistant that help users to find information about traveling, how to get"
        + " to places and the different transportations options. You care about the environment and you"
        + " always have that in mind when answering inqueries." },
    { role: "user", content: "When is the next flight from Miami to Seattle?" },
];

var response = await client.path("/chat/completions").post({  // differs: `response`, not `result`
    body: {
        messages: messages,
        tools: tools,
        tool_choice: "auto",
        temperature: 0  // differs: greedy
    }
});

if (isUnexpected(response)) {  // harness
    throw response.body.error;
}

const response_message = response.body.choices[0].message
const tool_calls = response_message.tool_calls

console.log("Finish reason: " + response.body.choices[0].finish_reason)
console.log("Tool call: " + JSON.stringify(tool_calls))  // differs: JSON.stringify

messages.push(response_message);

// differs: instead of `window`, the functions this module defines, by name
const functions = { get_flight_info };

function applyToolCall({ function: call, id }) {
    // Get the tool details:
    const tool_params = JSON.parse(call.arguments);
    console.log("Calling function " + call.name + " with arguments " + JSON.stringify(tool_params))  // differs: JSON.stringify

    // Call the function defined above using `window`, which returns the list of all functions 
    // available in the scope as a dictionary. Notice that this is just done as a simple way to get
    // the function callable from its string name. Then we can call it with the corresponding
    // arguments.
    // differs: the arguments, in the order the tool's schema requires them
    const function_response = functions[call.name](...flight_info.parameters.required.map((name) => tool_params[name]));
    console.log("-> " + JSON.stringify(function_response))  // differs: JSON.stringify

    return function_response
}

for (const tool_call of tool_calls) {
    var tool_response = applyToolCall(tool_call)  // differs: not tool_call.apply(applyToolCall)

    messages.push(
        {
            role: "tool",
            tool_call_id: tool_call.id,  // differs: `:` for `=`
            content: JSON.stringify(tool_response)  // differs: `:` for `=`, and a string
        }
    )
}

var result = await client.path("/chat/completions").post({
    body: {
        messages: messages,
        tools: tools,
    }
});

// harness
if (isUnexpected(result)) {
    throw result.body.error;
}
console.log("Second finish reason: " + result.body.choices[0].finish_reason);
console.log("Answer: " + result.body.choices[0].message.content);
